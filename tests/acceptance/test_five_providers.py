"""One config, five accounts, five simulators: the whole product through the real CLI.

History providers are discovered by paging; Akool and QuickRouter ids are handed
over with ``genvault track``, as a submitting system would. ``run --once`` repeats
until quiet, like a CronJob; then every file each simulator serves for a
succeeded generation must be archived byte-identical, with a deadline no later
than the provider's, and ``status`` must show all five accounts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from genvault.identity import url_key
from genvault.simulator import SIMULATORS, simulator_factory
from genvault.store import Store
from tests.acceptance.helpers import genvault, run_until_quiet, sim_account, write_config

KEY = "five-providers-key-24chr"  # 24 chars: Akool's AES-192 callback key is the API key


@pytest.fixture
def sims() -> Iterator[dict[str, Any]]:
    started: dict[str, Any] = {}
    try:
        for name in SIMULATORS:
            sim = simulator_factory(name)(api_key=KEY, seed=21, count=6, processing_seconds=0.5)
            sim.start()
            started[name] = sim
        yield started
    finally:
        for sim in started.values():
            sim.stop()


EXPECTED_SOURCES = {
    "crowdcomputed": {"assumed"},
    "geminigen": {"provider"},
    "akool": {"rule", "signed_url"},
    "tengrai": {"rule", "signed_url"},
    "quickrouter": {"signed_url", "assumed", "provider"},
}
"""The deadline sources each simulator's files may have: their adapters' rules."""


def test_five_accounts_archive_everything_verified(sims: dict[str, Any], tmp_path: Path) -> None:
    assert set(sims) == {"crowdcomputed", "geminigen", "akool", "tengrai", "quickrouter"}
    db = tmp_path / "gv.db"
    accounts = [sim_account(sim, "SIM_KEY", name=name) for name, sim in sims.items()]
    config = write_config(
        tmp_path / "genvault.toml",
        db_url=f"sqlite:///{db}",
        storage_url=f"file://{tmp_path / 'archive'}",
        accounts=accounts,
    )
    env = {"SIM_KEY": KEY}
    for name, sim in sims.items():
        ids = getattr(sim, "task_ids", None)
        if ids:
            proc = genvault("--config", str(config), "track", name, *ids, env=env)
            assert proc.returncode == 0, proc.stderr

    runs = run_until_quiet(config, env)
    assert runs[-1].returncode == 0, runs[-1].stderr[-3000:]

    store = Store(f"sqlite:///{db}")
    rows = store.assets()
    gens = store.generations()
    store.dispose()
    now = datetime.now(UTC)
    for name, sim in sims.items():
        wanted = {
            url_key(f.url): f
            for f in sim.expected_media()
            if f.role != "reference" and (f.expires_at is None or f.expires_at > now)
        }
        assert wanted, name
        mine = {url_key(r["source_url"]): r for r in rows if r["account"] == name}
        for key, exp in wanted.items():
            row = mine.get(key)
            assert row is not None, f"{name}: {exp.url} never discovered"
            assert row["state"] == "archived", (name, exp.url, row["last_error"])
            data = (tmp_path / "archive" / row["storage_key"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == exp.sha256 == row["sha256"]
            if exp.expires_at is not None:
                assert row["expires_at"] <= exp.expires_at, (name, exp.url)
            # every deadline says where it comes from (a guess never looks like a fact)
            assert row["expires_source"] in EXPECTED_SOURCES[name], (name, row["expires_source"])
        failed = [g for g in gens if g["account"] == name and g["status"] == "failed"]
        assert all(g["error"] for g in failed), f"{name}: a failed task without its reason"

    proc = genvault("--config", str(config), "status", "--json", env=env)
    doc = json.loads(proc.stdout)
    assert [a["name"] for a in doc["accounts"]] == list(sims)
    for acc in doc["accounts"]:
        assert acc["assets"].get("archived", 0) > 0, acc
        assert acc["assets"].get("pending", 0) == 0, acc
        # completeness you can prove: every stream walked whole, nothing missing
        assert acc["streams"], acc["name"]
        for stream in acc["streams"]:
            assert stream["missing"] == 0, (acc["name"], stream)
            assert stream["complete"], (acc["name"], stream["stream"], stream["problems"])
        assert acc["complete"], acc["name"]
    listing = [a for a in doc["accounts"] if a["has_history"]]
    for acc in listing:
        for stream in acc["streams"]:  # CrowdComputed: 25 workflows, most of them empty
            assert stream["last_walk_complete"] and stream["last_full_walk_at"], stream
            assert stream["listed"] is not None and stream["listed"] >= stream["known"]
        assert sum(stream["known"] for stream in acc["streams"]) > 0, acc["name"]
