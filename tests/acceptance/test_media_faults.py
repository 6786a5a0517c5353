"""Media download faults injected by the simulator's CDN, through ``genvault run --once``.

What must hold whatever the CDN does: nothing partial or foreign is ever
recorded as archived (every archived row's file is byte-identical to the
simulator's truth), transient faults end archived after retries, and error
documents are refused rather than stored.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from genvault.simulator import geminigen
from genvault.store import Store
from tests.acceptance.helpers import (
    defaults_config,
    genvault,
    run_done,
    run_until_quiet,
    time_passes,
)
from tests.fixtures.sims import SimStarter, sim_account

API_KEY = "gg-media-faults-key-93be"
ENV = {"GG_KEY": API_KEY}


@pytest.fixture
def sim(start_sim: SimStarter) -> geminigen.GeminiGenSimulator:
    return start_sim(
        geminigen.create,
        api_key=API_KEY,
        seed=23,
        count=6,
        image_size=40_000,
        video_size=300_000,
        audio_size=30_000,
        processing_count=0,
        failed_count=0,
    )


def _config(tmp_path: Path, sim: geminigen.GeminiGenSimulator) -> Path:
    """The defaults a user gets (retries 30 s apart and more): a retry is the next run's,
    after time passes through the store (:func:`run_until_quiet`)."""
    return defaults_config(
        tmp_path / "genvault.toml",
        db_url=f"sqlite:///{tmp_path / 'gv.db'}",
        storage_url=f"file://{tmp_path / 'archive'}",
        account=sim_account(sim, "GG_KEY", fetch_detail="always"),
    )


def _rows(tmp_path: Path) -> list[dict[str, object]]:
    """Asset rows genvault means to archive (references are off by default: skipped)."""
    store = Store(f"sqlite:///{tmp_path / 'gv.db'}")
    try:
        return [r for r in store.assets() if r["state"] != "skipped"]
    finally:
        store.dispose()


def _assert_every_archived_file_is_true(tmp_path: Path, sim: geminigen.GeminiGenSimulator) -> int:
    """Archived rows point at files identical to the truth; no other media file exists."""
    truth = {f.url: f for f in sim.expected_media()}
    root = tmp_path / "archive"
    archived = 0
    keys = set()
    for row in _rows(tmp_path):
        if row["state"] != "archived":
            continue
        exp = truth[str(row["source_url"])]
        data = (root / str(row["storage_key"])).read_bytes()
        assert hashlib.sha256(data).hexdigest() == exp.sha256 == row["sha256"]
        keys.add(str(row["storage_key"]))
        archived += 1
    on_disk = {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and p.name != "generation.json" and ".genvault-tmp" not in p.parts
    }
    assert on_disk == keys, f"files without an archived row: {sorted(on_disk - keys)}"
    return archived


def _events(proc_stderr: str, name: str) -> list[dict[str, object]]:
    out = []
    for line in proc_stderr.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == name:
                out.append(event)
    return out


def test_cut_off_bodies_resume_with_range_and_arrive_whole(
    sim: geminigen.GeminiGenSimulator, tmp_path: Path
) -> None:
    sim.faults.media_truncate_next = 4
    proc = genvault("--config", str(_config(tmp_path, sim)), "run", "--once", env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sim.stats.snapshot()["statuses"].get("206", 0) >= 4, "no Range resume happened"
    assert len(_events(proc.stderr, "download.resume")) >= 4
    assert _assert_every_archived_file_is_true(tmp_path, sim) == len(sim.expected_media()) - sum(
        1 for f in sim.expected_media() if f.role == "reference"
    )


def test_cut_off_bodies_without_resume_are_retried_never_stored_partial(
    sim: geminigen.GeminiGenSimulator, tmp_path: Path
) -> None:
    config = _config(tmp_path, sim)
    text = config.read_text()  # defaults_config opened [network]; the setting joins it
    config.write_text(text.replace("[network]\n", "[network]\nmedia_resume_attempts = 0\n", 1))
    sim.faults.media_truncate = True
    first = genvault("--config", str(config), "run", "--once", env=ENV)
    assert first.returncode == 3, first.stderr[-3000:]
    assert _assert_every_archived_file_is_true(tmp_path, sim) == 0
    states = {r["state"] for r in _rows(tmp_path)}
    assert states == {"pending"}
    assert all("connection broke" in str(r["last_error"]) for r in _rows(tmp_path))
    sim.faults.media_truncate = False
    time_passes(f"sqlite:///{tmp_path / 'gv.db'}")  # the next run comes after the backoff
    runs = run_until_quiet(config, ENV)
    assert [r.returncode for r in runs] == [0], runs[-1].stderr[-3000:]
    assert _assert_every_archived_file_is_true(tmp_path, sim) > 0
    assert {r["state"] for r in _rows(tmp_path)} == {"archived"}


@pytest.mark.parametrize("page", ["html", "json", "html_as_image"])
def test_error_documents_are_refused_not_stored(
    sim: geminigen.GeminiGenSimulator, tmp_path: Path, page: str
) -> None:
    sim.faults.media_error_page = page  # type: ignore[assignment]
    proc = genvault("--config", str(_config(tmp_path, sim)), "run", "--once", env=ENV)
    assert proc.returncode == 3, proc.stderr[-3000:]
    rows = _rows(tmp_path)
    assert rows and {r["state"] for r in rows} == {"failed"}
    assert all("not media" in str(r["last_error"]) for r in rows)
    assert _assert_every_archived_file_is_true(tmp_path, sim) == 0
    failed = _events(proc.stderr, "asset.failed")
    assert len(failed) == len(rows) and all(e["level"] == "error" for e in failed)


@pytest.mark.parametrize("status", [403, 404, 410])
def test_gone_before_the_deadline_refreshes_the_url_and_archives(
    sim: geminigen.GeminiGenSimulator, tmp_path: Path, status: int
) -> None:
    sim.faults.update(media_status_next=2, media_status=status)
    proc = genvault("--config", str(_config(tmp_path, sim)), "run", "--once", env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(_events(proc.stderr, "asset.url_refreshed")) == 2
    assert {r["state"] for r in _rows(tmp_path)} == {"archived"}
    _assert_every_archived_file_is_true(tmp_path, sim)


def test_cdn_5xx_is_retried_until_archived(
    sim: geminigen.GeminiGenSimulator, tmp_path: Path
) -> None:
    sim.faults.update(media_status_next=5, media_status=503)
    runs = run_until_quiet(_config(tmp_path, sim), ENV)
    # The first run says files wait for a retry (30 s later, at the defaults); the next
    # run, once the backoffs have passed, archives every file.
    assert [r.returncode for r in runs] == [3, 0], runs[-1].stderr[-3000:]
    assert run_done(runs[0].stderr)["retrying"] > 0
    assert {r["state"] for r in _rows(tmp_path)} == {"archived"}
    _assert_every_archived_file_is_true(tmp_path, sim)
