"""``genvault track`` + ``genvault run --once`` against the Akool simulator, end to end.

Akool has no history listing, so the ids are registered first, as whoever submitted
the jobs would (taken from the simulator's truth). Then the CLI runs as a separate
process until quiet: every live file is archived byte-identical with its deadline
(create_time + 7 days, or a signed upscale URL's earlier ``Expires=``), failed jobs
are failed with their reason, files past the 7 days are lost, and a second run
downloads nothing.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from genvault.simulator import akool
from genvault.simulator.base import ExpectedFile
from genvault.store import Store
from tests.acceptance.helpers import (
    genvault,
    local_config,
    run_until_quiet,
    sim_account,
)
from tests.fixtures.sims import SimStarter

API_KEY = "ak-acc-key-0123456789abc"  # 24 characters, like Akool's
PROCESSING_S = 60.0  # never finishes by itself: the test advances the simulator clock


@pytest.fixture
def sim(start_sim: SimStarter) -> akool.AkoolSimulator:
    return start_sim(
        akool.create,
        api_key=API_KEY,
        seed=21,
        count=12,
        image_size=25_000,
        upscale_size=40_000,
        processing_count=3,
        processing_seconds=PROCESSING_S,
        failed_count=2,
        upscaled_count=4,
        expired_count=1,
    )


def _config(sim: akool.AkoolSimulator, tmp_path: Path) -> Path:
    return local_config(tmp_path, [sim_account(sim, "AKOOL_KEY")])


def _exp(f: ExpectedFile) -> datetime:
    """The simulator always knows a file's deadline."""
    assert f.expires_at is not None
    return f.expires_at


def test_tracked_ids_are_archived_verified_and_twice_is_a_no_op(
    sim: akool.AkoolSimulator, tmp_path: Path
) -> None:
    config = _config(sim, tmp_path)
    env = {"AKOOL_KEY": API_KEY}
    tracked = genvault("--config", str(config), "track", "main", *sim.task_ids, env=env)
    assert tracked.returncode == 0, tracked.stderr[-3000:]
    assert f"{len(sim.task_ids)} new task(s)" in tracked.stdout

    # first pass: the three newest jobs are still queued at Akool, so they stay due
    first = genvault("--config", str(config), "run", "--once", env=env)
    assert first.returncode in (0, 4), first.stderr[-3000:]
    store = Store(f"sqlite:///{tmp_path / 'gv.db'}")
    waiting = {g["external_id"]: g for g in store.generations() if g["next_poll_at"] is not None}
    store.dispose()
    assert set(waiting) == set(sim.task_ids[:3])
    assert {(g["status"], g["provider_status"]) for g in waiting.values()} == {("queued", "1")}

    sim.clock.advance(PROCESSING_S + 1)  # now they are done (one of them failed)
    runs = [first, *run_until_quiet(config, env)]
    # exit 4 = files were lost (the expired task's) in that run; otherwise 0
    assert {r.returncode for r in runs} <= {0, 4}, runs[-1].stderr[-3000:]
    assert any(r.returncode == 4 for r in runs)

    store = Store(f"sqlite:///{tmp_path / 'gv.db'}")
    assets = {a["source_url"]: a for a in store.assets()}
    gens = {g["external_id"]: g for g in store.generations()}
    store.dispose()

    now = datetime.now(UTC)
    expected = sim.expected_media()
    live: list[ExpectedFile] = [f for f in expected if _exp(f) > now]
    dead = [f for f in expected if _exp(f) <= now]
    assert live and dead and any(f.role == "upscale" for f in live)
    assert set(assets) == {f.url for f in expected}, "every file discovered, nothing else"

    archive = tmp_path / "archive"
    for f in live:
        row = assets[f.url]
        assert row["state"] == "archived", (f.url, row["last_error"])
        assert row["role"] == f.role and row["kind"] == "image"
        assert row["sha256"] == f.sha256 and row["size"] == f.size
        on_disk = (archive / row["storage_key"]).read_bytes()
        assert hashlib.sha256(on_disk).hexdigest() == f.sha256
        assert row["storage_key"].startswith("akool/main/")
        # deadline: create_time + 7 days, or the signed URL's whole-second Expires=
        assert abs(row["expires_at"] - _exp(f)) < timedelta(seconds=1)
    signed = [f for f in live if f.role == "upscale"]
    for f in signed:
        image = next(
            e for e in expected if e.generation_id == f.generation_id and e.role == "result"
        )
        assert assets[f.url]["expires_at"] < assets[image.url]["expires_at"]
    for f in dead:
        assert assets[f.url]["state"] == "lost", (f.url, assets[f.url]["state"])

    assert set(gens) == set(sim.task_ids)
    for tid, g in gens.items():
        if tid in sim.failed_ids:
            assert g["status"] == "failed"
            assert g["error"] and "image_status 4" in g["error"]
        else:
            assert g["status"] == "succeeded", (tid, g["error"])
        created = datetime.fromtimestamp(int(tid[:8], 16), UTC)
        assert abs(g["created_at"] - created) < timedelta(seconds=1)
        assert g["next_poll_at"] is None

    # a second run downloads nothing and polls nothing
    before = sim.stats.snapshot()
    again = genvault("--config", str(config), "run", "--once", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    after = sim.stats.snapshot()
    assert after["media_bytes"] == before["media_bytes"]
    assert after["routes"].get("infobymodelid") == before["routes"].get("infobymodelid")
    files = [p for p in archive.rglob("*") if p.is_file() and ".genvault-tmp" not in p.parts]
    assert len([p for p in files if p.name != "generation.json"]) == len(live)
