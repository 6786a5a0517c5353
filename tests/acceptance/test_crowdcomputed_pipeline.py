"""``genvault run --once`` end to end: CrowdComputed simulator -> SQLite -> a folder.

The CLI runs as a separate process, as a CronJob would, against the simulator over
loopback HTTP: every workflow is its own history stream, relative result URLs resolve
against the simulator's data CDN, tasks still waiting or generating are polled through
``/api/v1/query/status`` until they finish.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from genvault.simulator import crowdcomputed
from genvault.simulator.base import ExpectedFile
from genvault.simulator.crowdcomputed import CrowdComputedSimulator
from genvault.store import Store
from tests.acceptance.helpers import (
    genvault,
    local_config,
    run_until_quiet,
    sim_account,
)
from tests.fixtures.sims import SimStarter

API_KEY = "cc-test-key-51c0ffee"
ENV = {"CC_KEY": API_KEY}


@pytest.fixture
def sim(start_sim: SimStarter) -> CrowdComputedSimulator:
    return start_sim(
        crowdcomputed.create,
        api_key=API_KEY,
        seed=13,
        count=18,
        image_size=20_000,
        video_size=150_000,
        processing_count=2,
        processing_seconds=1.5,
        failed_count=2,
        empty_count=1,
        expired_count=1,
        max_page_size=100,
    )


def _account(sim: CrowdComputedSimulator, **extra: Any) -> dict[str, Any]:
    return {**sim_account(sim, "CC_KEY"), "page_size": 4, **extra}


def _config(tmp_path: Path, sim: CrowdComputedSimulator, **extra: Any) -> Path:
    return local_config(tmp_path, [_account(sim, **extra)])


def _same_instant(a: datetime | None, b: datetime | None) -> bool:
    return a is not None and b is not None and a.timestamp() == b.timestamp()


def test_run_once_archives_every_workflow_and_twice_is_a_no_op(
    sim: CrowdComputedSimulator, tmp_path: Path
) -> None:
    config = _config(tmp_path, sim)  # default options: all 25 workflows, snake paging
    runs = run_until_quiet(config, ENV)
    # exit 4 (LOST) reports the expired task's file once; nothing else may go wrong
    assert {r.returncode for r in runs} <= {0, 4}, runs[-1].stderr[-3000:]
    assert [r.returncode for r in runs].count(4) == 1

    store = Store(f"sqlite:///{tmp_path / 'gv.db'}")
    assets = {a["source_url"]: a for a in store.assets()}
    gens = {g["external_id"]: g for g in store.generations()}
    store.dispose()

    # every task of every workflow was discovered, under its workflow
    assert set(gens) == set(sim.outcomes)
    for task_id, workflow in sim.workflow_of.items():
        assert gens[task_id]["kind"] == workflow, task_id

    expected: dict[str, ExpectedFile] = {f.url: f for f in sim.expected_media()}
    assert {f.role for f in expected.values()} == {"result"}
    assert set(assets) == set(expected), "exactly the simulator's files, relative ones resolved"
    now = sim.clock.now()
    dead = {f.url for f in expected.values() if f.expires_at is not None and f.expires_at <= now}
    assert len(dead) >= 1
    archive = tmp_path / "archive"
    for url, exp in expected.items():
        row = assets[url]
        assert _same_instant(row["expires_at"], exp.expires_at), (url, row["expires_at"])
        if url in dead:  # the one old task's files were gone before we came
            assert row["state"] == "lost", (url, row["state"])
            continue
        assert row["state"] == "archived", (url, row["last_error"])
        assert row["sha256"] == exp.sha256 and row["size"] == exp.size
        on_disk = (archive / row["storage_key"]).read_bytes()
        assert hashlib.sha256(on_disk).hexdigest() == exp.sha256
        assert row["storage_key"].startswith("crowdcomputed/main/")

    outcomes = sim.outcomes
    for task_id, outcome in outcomes.items():
        g = gens[task_id]
        if outcome == "finished":
            assert g["status"] == "succeeded", (task_id, g["error"])
        else:
            assert g["status"] == "failed"
            reason = "failed at provider" if outcome == "failed" else "finished without outputs"
            assert g["error"] == reason
    assert sum(1 for o in outcomes.values() if o != "finished") == 3

    # the newest tasks were still waiting/generating when first listed: polled by id
    assert sim.stats.snapshot()["routes"].get("status", 0) > 0

    # a second run downloads nothing again
    served = sim.stats.snapshot()["media_bytes"]
    files = sorted(p for p in archive.rglob("*") if p.is_file())
    again = genvault("--config", str(config), "run", "--once", env=ENV)
    assert again.returncode == 0, again.stderr[-3000:]
    assert sim.stats.snapshot()["media_bytes"] == served
    assert sorted(p for p in archive.rglob("*") if p.is_file()) == files
    assert API_KEY not in "".join(r.stdout + r.stderr for r in [*runs, again])


def test_docs_spellings_authorization_header_and_camel_paging(tmp_path: Path) -> None:
    """The docs' variant of the API: raw ``Authorization`` and ``pageIndex``/``pageSize``."""
    with crowdcomputed.create(
        api_key=API_KEY,
        seed=21,
        count=9,
        image_size=10_000,
        video_size=40_000,
        processing_count=0,
        failed_count=0,
        empty_count=0,
        accept_paging="camel",
        max_page_size=2,
    ) as sim:
        config = _config(
            tmp_path,
            sim,
            auth_style="authorization",
            paging_params="camel",
            workflows=list(sim.config.workflows),
            page_size=2,
        )
        runs = run_until_quiet(config, ENV)
        assert runs[-1].returncode == 0, runs[-1].stderr[-3000:]
        store = Store(f"sqlite:///{tmp_path / 'gv.db'}")
        assets = store.assets()
        gens = store.generations()
        store.dispose()
        assert {g["external_id"] for g in gens} == set(sim.outcomes)
        assert {a["source_url"] for a in assets} == {f.url for f in sim.expected_media()}
        assert all(a["state"] == "archived" for a in assets)
        assert sim.paging_seen["camel"] > 0 and sim.paging_seen["snake"] == 0
