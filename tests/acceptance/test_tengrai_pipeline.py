"""``genvault run --once`` end to end against the Tengr.ai simulator, into a folder.

The CLI runs as a separate process, with two accounts in one config (one pass
serves both, which keeps the test short): ``v1`` on a simulator of the synchronous
API (terminal items only) and ``v2`` on one whose newest artworks are still
``starting``/``processing`` when first listed, so the poller follows them by id.
Both carry signed result URLs whose expiry comes before the 8-day retention.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from genvault.simulator import tengrai
from genvault.simulator.base import ExpectedFile
from genvault.simulator.tengrai import TengrAISimulator
from genvault.store import Store
from tests.acceptance.helpers import genvault, run_until_quiet, sim_account, write_config

API_KEY = "tengr-acceptance-key-51c0"
ENV = {"TENGR_KEY": API_KEY}
VERSIONS = ("v1", "v2")
REASONS = {
    "v1": {
        "failed": "failed (no reason given)",
        "canceled": "failed (no reason given)",  # v1 has no "canceled"
        "empty": "done without results",
    },
    "v2": {
        "failed": "failed (no reason given)",
        "canceled": "canceled",
        "empty": "succeeded without results",
    },
}


def _sim(version: str) -> TengrAISimulator:
    return tengrai.create(
        api_key=API_KEY,
        seed=21 if version == "v1" else 22,
        count=12,
        image_size=20_000,
        processing_count=0 if version == "v1" else 2,
        processing_seconds=3.0,  # outlives the CLI's start-up: the first run sees them running
        failed_count=2,
        canceled_count=1,
        empty_count=1,
        signed_count=2,
        signed_ttl_seconds=3600,
        api_version=version,
    )


@pytest.fixture
def sims() -> Iterator[dict[str, TengrAISimulator]]:
    started = {v: _sim(v) for v in VERSIONS}
    for s in started.values():
        s.start()
    yield started
    for s in started.values():
        s.stop()


def _account(version: str, sim: TengrAISimulator) -> dict[str, Any]:
    return {**sim_account(sim, "TENGR_KEY", name=version), "page_limit": 4}  # + api_version


def test_run_once_archives_every_result_with_its_deadline(
    sims: dict[str, TengrAISimulator], tmp_path: Path
) -> None:
    archive = tmp_path / "archive"
    db_url = f"sqlite:///{tmp_path / 'gv.db'}"
    config = write_config(
        tmp_path / "genvault.toml",
        db_url=db_url,
        storage_url=f"file://{archive}",
        accounts=[_account(v, s) for v, s in sims.items()],
    )
    runs = run_until_quiet(config, ENV)
    assert runs[-1].returncode == 0, runs[-1].stderr[-3000:]

    store = Store(db_url)
    try:
        for version, sim in sims.items():
            _check_account(
                version,
                sim,
                {a["source_url"]: a for a in store.assets(version)},
                {g["external_id"]: g for g in store.generations(version)},
                archive,
            )
    finally:
        store.dispose()

    # a second run downloads nothing again
    served = [s.stats.snapshot()["media_bytes"] for s in sims.values()]
    files = sorted(p for p in archive.rglob("*") if p.is_file())
    again = genvault("--config", str(config), "run", "--once", env=ENV)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [s.stats.snapshot()["media_bytes"] for s in sims.values()] == served
    assert sorted(p for p in archive.rglob("*") if p.is_file()) == files


def _check_account(
    version: str,
    sim: TengrAISimulator,
    assets: dict[str, dict[str, Any]],
    gens: dict[str, dict[str, Any]],
    archive: Path,
) -> None:
    # every result file, byte-identical, with the earliest of retention and URL expiry
    expected: dict[str, ExpectedFile] = {f.url: f for f in sim.expected_media()}
    assert set(assets) == set(expected)
    assert sum("Expires=" in url for url in expected) >= 2
    for url, exp in expected.items():
        row = assets[url]
        assert row["state"] == "archived", (url, row["last_error"])
        assert row["sha256"] == exp.sha256 and row["size"] == exp.size
        assert row["role"] == "result" and row["kind"] == "image"
        assert row["expires_at"] == exp.expires_at
        on_disk = (archive / row["storage_key"]).read_bytes()
        assert hashlib.sha256(on_disk).hexdigest() == exp.sha256
        assert row["storage_key"].startswith(f"tengrai/{version}/")

    # every artwork is known; the ones that failed at the provider say why
    outcomes = sim.outcomes
    assert set(gens) == set(outcomes)
    for ext, outcome in outcomes.items():
        g = gens[ext]
        if outcome == "ok":
            assert g["status"] == "succeeded", (ext, g["error"])
            assert g["provider_status"] == ("done" if version == "v1" else "succeeded")
        else:
            assert g["status"] == "failed"
            assert g["error"] == REASONS[version][outcome]
    assert sum(1 for o in outcomes.values() if o != "ok") == 4

    # each account spoke only its own version; v2 followed the running ones by id
    routes = sim.stats.snapshot()["routes"]
    other = "v2" if version == "v1" else "v1"
    assert not any(r.startswith(other) for r in routes), routes
    if version == "v2":
        assert routes.get("v2/artworks/id", 0) >= 2, routes
        for g in sim.generations[:2]:
            row = gens[g["id"]]
            assert row["status"] == "succeeded"
            assert row["completed_at"] > row["created_at"]
