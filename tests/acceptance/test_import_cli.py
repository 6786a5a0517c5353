"""``genvault import ACCOUNT DIR`` end to end: QuickRouter simulator -> SQLite -> folder.

QuickRouter has no listing: the task ids are registered with ``genvault track``, and a
first pass whose media requests all fail learns every task and its video's URL
without archiving anything. The user's folder holds the videos they downloaded
before, named the ways people and tools name them (the id with its ``grok:`` prefix
made file-safe, the id verbatim with its colon, a JSON sidecar with ``taskId``).
QuickRouter announces no sizes, so each is checked with a one-byte Range GET of
the signed URL. Then a second folder with what must not be adopted: a copy cut
short, an HTML page saved as ``.mp4``, a video of no task this account knows.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from genvault.simulator import media, quickrouter
from genvault.simulator.base import ExpectedFile
from genvault.simulator.quickrouter import QuickRouterSimulator
from genvault.store import Store
from tests.acceptance.helpers import genvault, local_config, sim_account
from tests.fixtures.sims import SimStarter

API_KEY = "sk-qr-import-5be0d2"
ENV = {"QR_KEY": API_KEY}


@pytest.fixture
def sim(start_sim: SimStarter) -> QuickRouterSimulator:
    return start_sim(
        quickrouter.create,
        api_key=API_KEY,
        seed=8,
        count=7,
        video_size=40_000,
        image_size=5_000,
        processing_count=0,
        failed_count=1,
    )


def _bytes(sim: QuickRouterSimulator, f: ExpectedFile) -> bytes:
    entry = sim.server.media_entry(urlsplit(f.url).path)
    assert entry is not None
    return media.read_all(entry.spec)


def _assets(tmp_path: Path) -> dict[str, dict[str, Any]]:
    store = Store(f"sqlite:///{tmp_path / 'gv.db'}")
    try:
        return {a["external_id"]: a for a in store.assets() if a["role"] == "result"}
    finally:
        store.dispose()


def test_import_adopts_downloaded_videos_and_the_next_pass_leaves_them(
    sim: QuickRouterSimulator, tmp_path: Path
) -> None:
    config = local_config(tmp_path, [sim_account(sim, "QR_KEY", name="qr")])
    gv = ("--config", str(config))
    tracked = genvault(*gv, "track", "qr", *sim.task_ids, env=ENV)
    assert tracked.returncode == 0, tracked.stderr[-2000:]
    sim.faults.media_status_next = 1_000_000  # learn every task, archive nothing
    first = genvault(*gv, "run", "--once", env=ENV)
    sim.faults.reset()
    assert first.returncode == 3, first.stderr[-3000:]
    assert all(a["state"] == "pending" for a in _assets(tmp_path).values())

    videos = [f for f in sim.expected_media() if f.role == "result"]
    assert len(videos) >= 5
    good_dir = tmp_path / "downloads"
    good_dir.mkdir()
    good: dict[str, ExpectedFile] = {}
    safe, verbatim, with_sidecar = videos[:3]
    good[safe.generation_id.replace(":", "_") + ".mp4"] = safe  # grok_<id>.mp4
    good[verbatim.generation_id + ".mp4"] = verbatim  # the colon kept (Linux allows it)
    good["my video.mp4"] = with_sidecar
    (good_dir / "my video.json").write_text(json.dumps({"taskId": with_sidecar.generation_id}))
    for name, f in good.items():
        (good_dir / name).write_bytes(_bytes(sim, f))

    # A dry run: what would happen, nothing written.
    dry = genvault(*gv, "import", "qr", str(good_dir), "--dry-run", env=ENV)
    assert dry.returncode == 0, dry.stdout + dry.stderr[-3000:]
    assert "import (dry run) qr" in dry.stdout and "3 would import" in dry.stdout
    assert all(a["state"] == "pending" for a in _assets(tmp_path).values())
    assert not (tmp_path / "archive").exists() or not any((tmp_path / "archive").rglob("*.mp4"))

    done = genvault(*gv, "import", "qr", str(good_dir), "--json", env=ENV)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["counts"]["imported"] == 3 and report["exit_code"] == 0
    assert {f["path"] for f in report["files"] if f["verdict"] == "imported"} == set(good)
    assert all(f["size_check"] == "served" for f in report["files"])
    rows = _assets(tmp_path)
    for name, f in good.items():
        row = rows[f.generation_id]
        assert row["state"] == "archived", name
        assert (row["size"], row["sha256"]) == (f.size, f.sha256)
        stored = (tmp_path / "archive" / row["storage_key"]).read_bytes()
        assert hashlib.sha256(stored).hexdigest() == f.sha256
        assert row["storage_key"].endswith(".mp4")

    # What must not be adopted.
    bad_dir = tmp_path / "junk"
    bad_dir.mkdir()
    short, page = videos[3], videos[4]
    (bad_dir / f"{short.generation_id.replace(':', '-')}.mp4").write_bytes(
        _bytes(sim, short)[:-5000]
    )
    (bad_dir / f"{page.generation_id.replace(':', '_')}.mp4").write_text(
        "<html><head><title>Access denied</title></head></html>"
    )
    (bad_dir / "grok_00000000-0000-4000-8000-000000000000.mp4").write_bytes(_bytes(sim, safe))
    refused = genvault(*gv, "import", "qr", str(bad_dir), env=ENV)
    assert refused.returncode == 3, refused.stdout + refused.stderr[-3000:]
    out = refused.stdout
    assert "partial download" in out and "HTML page" in out and "unmatched" in out
    assert "0 imported" in out and "2 refused" in out and "1 unmatched" in out
    rows = _assets(tmp_path)
    assert rows[short.generation_id]["state"] == rows[page.generation_id]["state"] == "pending"

    # The next pass downloads the rest, and none of the imported videos.
    retry = genvault(*gv, "retry", "qr", env=ENV)  # the failed pass's backoff: due now
    assert retry.returncode == 0, retry.stderr[-2000:]
    sim.stats.reset()
    again = genvault(*gv, "run", "--once", env=ENV)
    assert again.returncode == 0, again.stderr[-3000:]
    hits = sim.stats.snapshot()["media_hits"]
    assert urlsplit(short.url).path in hits
    for f in good.values():
        assert urlsplit(f.url).path not in hits
    assert all(a["state"] == "archived" for a in _assets(tmp_path).values())

    # Importing the folder again does nothing.
    files = sorted((p, p.stat().st_mtime_ns) for p in (tmp_path / "archive").rglob("*.mp4"))
    twice = genvault(*gv, "import", "qr", str(good_dir), env=ENV)
    assert twice.returncode == 0, twice.stdout + twice.stderr[-3000:]
    assert "0 imported" in twice.stdout and "3 already archived" in twice.stdout
    assert sorted((p, p.stat().st_mtime_ns) for p in (tmp_path / "archive").rglob("*.mp4")) == files
    assert API_KEY not in "".join(r.stdout + r.stderr for r in (dry, done, refused, twice))
