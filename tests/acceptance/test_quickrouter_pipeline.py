"""``genvault track`` + ``run --once`` end to end: QuickRouter simulator -> SQLite -> folder.

QuickRouter has no listing, so the task ids are registered first, as a user would
from their own submission log. The scenario also proves the signed-URL refresh: the
first pass stores URLs signed for 2 s but cannot finish the downloads (the CDN
truncates them); once those signatures have expired (and with them the files'
URL-derived deadlines), the next pass gets a 403, re-reads the task through
``fetch()``, gets the same path freshly signed, and archives it. Nothing is lost,
because the file itself lives 24 h after completion.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from genvault.expiry import url_expiry
from genvault.identity import url_key
from genvault.simulator import quickrouter
from genvault.simulator.quickrouter import QuickRouterSimulator
from genvault.store import Store
from tests.acceptance.helpers import (
    genvault,
    local_config,
    run_until_quiet,
    sim_account,
)
from tests.fixtures.sims import SimStarter

API_KEY = "sk-qr-acceptance-41c7e9"
ENV = {"QR_KEY": API_KEY}


@pytest.fixture
def sim(start_sim: SimStarter) -> QuickRouterSimulator:
    return start_sim(
        quickrouter.create,
        api_key=API_KEY,
        seed=21,
        count=9,
        video_size=250_000,
        image_size=20_000,
        processing_count=3,
        processing_seconds=1.5,
        late_url_seconds=0.5,
        failed_count=2,
        url_ttl_seconds=2,
    )


def _config(sim: QuickRouterSimulator, tmp_path: Path) -> Path:
    return local_config(tmp_path, [sim_account(sim, "QR_KEY", name="qr")])


def _rows(tmp_path: Path) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    store = Store(f"sqlite:///{tmp_path / 'gv.db'}")
    try:
        gens = {g["external_id"]: g for g in store.generations()}
        return store.assets(), gens
    finally:
        store.dispose()


def test_track_then_run_archives_everything_and_heals_expired_urls(
    sim: QuickRouterSimulator, tmp_path: Path
) -> None:
    config = _config(sim, tmp_path)
    tracked = genvault("--config", str(config), "track", "qr", *sim.task_ids, env=ENV)
    assert tracked.returncode == 0, tracked.stderr[-2000:]
    assert f"{len(sim.task_ids)} new task(s)" in tracked.stdout

    # Pass 1: poll stores 2-second URLs, every download is cut short (transient).
    sim.faults.media_truncate = True
    first = genvault("--config", str(config), "run", "--once", env=ENV)
    assert first.returncode == 3, first.stderr[-3000:]  # retrying, nothing lost
    assets, _ = _rows(tmp_path)
    stored = [a for a in assets if a["role"] == "result"]
    assert stored and all(a["state"] == "pending" for a in stored)
    assert not any(a["url_refreshed"] for a in assets)
    first_urls = {a["id"]: a["source_url"] for a in stored}

    # Let every stored signature (and so every URL-derived deadline) pass.
    sim.faults.media_truncate = False
    sim.url_ttl_seconds = 3600
    latest = max(url_expiry(u) or datetime.now(UTC) for u in first_urls.values())
    time.sleep(max(0.0, (latest - datetime.now(UTC)).total_seconds()) + 0.1)

    runs = run_until_quiet(config, ENV)
    # 3 = "retrying": a 403'd file is re-read and re-queued, then archived in the same pass.
    assert all(r.returncode in (0, 3) for r in runs), runs[-1].stderr[-3000:]

    assets, gens = _rows(tmp_path)
    archive = tmp_path / "archive"
    expected = {(f.generation_id, url_key(f.url)): f for f in sim.expected_media()}
    by_key = {(a["external_id"], a["url_key"]): a for a in assets}
    assert set(gens) == set(sim.task_ids)  # ids kept verbatim, "grok:" prefix included
    assert not [a for a in assets if a["state"] == "lost"]

    for (gid, key), exp in expected.items():
        row = by_key[(gid, key)]
        if exp.role == "reference":
            assert row["state"] == "skipped"  # inputs are off by default
            continue
        assert row["state"] == "archived", (gid, row["last_error"])
        assert row["sha256"] == exp.sha256 and row["size"] == exp.size
        on_disk = (archive / row["storage_key"]).read_bytes()
        assert hashlib.sha256(on_disk).hexdigest() == exp.sha256
        # The deadline is the archived URL's own signed expiry, never past the file's life.
        assert row["expires_at"] == url_expiry(row["source_url"])
        assert row["expires_at"] <= sim.deadline(gid)
        assert urlsplit(row["source_url"]).path == urlsplit(exp.url).path

    refreshed = [a for a in assets if a["url_refreshed"]]
    assert {a["id"] for a in refreshed} == set(first_urls)
    for a in refreshed:
        assert a["state"] == "archived"
        assert a["source_url"] != first_urls[a["id"]]  # same path, new signature
        old_deadline = url_expiry(first_urls[a["id"]])
        assert old_deadline is not None and a["expires_at"] > old_deadline
    assert sim.stats.snapshot()["statuses"].get("403", 0) >= len(refreshed)

    for tid, reason in sim.failures.items():
        assert gens[tid]["status"] == "failed"
        assert gens[tid]["error"] == reason
    stale = sim.stale_error_id
    assert stale is not None
    assert gens[stale]["status"] == "succeeded" and gens[stale]["error"] is None
    late = sim.late_url_id
    assert late is not None and gens[late]["status"] == "succeeded"
    done = [g for g in gens.values() if g["status"] == "succeeded"]
    assert len(done) == len(sim.task_ids) - len(sim.failures)

    # A second run downloads nothing again.
    served = sim.stats.snapshot()["media_bytes"]
    files = sorted(p for p in archive.rglob("*") if p.is_file())
    again = genvault("--config", str(config), "run", "--once", env=ENV)
    assert again.returncode == 0, again.stderr[-3000:]
    assert sim.stats.snapshot()["media_bytes"] == served
    assert sorted(p for p in archive.rglob("*") if p.is_file()) == files
    assert API_KEY not in "".join(r.stdout + r.stderr for r in [tracked, first, *runs, again])
