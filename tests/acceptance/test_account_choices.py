"""Per-account choices, through ``genvault run --once`` against two GeminiGen simulators:
``roles`` (no thumbnails for one account), ``kinds`` (only videos for another) and
``backfill_days`` (how far back an account's first walk reaches).

What must hold: what an account leaves out is recorded as skipped and never fetched;
``status`` says how many files were left out and which setting did it; the run is
still complete (a skipped file is a choice, not a miss); widening the choice later
archives the files already known.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from genvault.simulator import geminigen
from genvault.store import Store
from tests.acceptance.helpers import genvault, local_config
from tests.fixtures.sims import SimStarter, sim_account

KEY = "gg-choices-key-77aa"
ENV = {"GG_KEY": KEY}


def _sim(start_sim: SimStarter, seed: int) -> geminigen.GeminiGenSimulator:
    return start_sim(
        geminigen.create,
        api_key=KEY,
        seed=seed,
        count=12,
        image_size=8_000,
        video_size=30_000,
        audio_size=6_000,
        processing_count=0,
        failed_count=0,
    )


def _rows(tmp_path: Path, account: str) -> list[dict[str, Any]]:
    store = Store(f"sqlite:///{tmp_path / 'gv.db'}")
    try:
        return store.assets(account)
    finally:
        store.dispose()


def _status(config: Path) -> dict[str, Any]:
    proc = genvault("--config", str(config), "status", "--json", env=ENV)
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def test_roles_and_kinds_per_account_skip_files_and_say_why(
    tmp_path: Path, start_sim: SimStarter
) -> None:
    plain, videos = _sim(start_sim, 3), _sim(start_sim, 4)
    accounts = [
        sim_account(plain, "GG_KEY", name="plain", roles=["result", "last_frame"]),
        sim_account(videos, "GG_KEY", name="videos", kinds=["video"]),
    ]
    config = local_config(tmp_path, accounts)
    proc = genvault("--config", str(config), "run", "--once", env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]

    plain_rows = _rows(tmp_path, "plain")
    assert {r["role"] for r in plain_rows if r["state"] == "archived"} <= {"result", "last_frame"}
    thumbs = [r for r in plain_rows if r["role"] == "thumbnail"]
    assert thumbs and all(r["state"] == "skipped" for r in thumbs)
    video_rows = _rows(tmp_path, "videos")
    assert any(r["kind"] == "video" and r["state"] == "archived" for r in video_rows)
    others = [r for r in video_rows if r["kind"] != "video"]
    assert others and all(r["state"] == "skipped" for r in others)

    fetched = {p for sim in (plain, videos) for p in sim.stats.snapshot()["media_hits"]}
    for r in plain_rows + video_rows:
        if r["state"] == "skipped":
            assert not any(r["source_url"].endswith(p) for p in fetched), r["source_url"]

    doc = _status(config)
    by_name = {a["name"]: a for a in doc["accounts"]}
    assert all(a["complete"] for a in doc["accounts"]), "a skipped file is not a missed one"
    plain_why = {s["why"] for s in by_name["plain"]["skipped"]}
    assert plain_why == {"accounts[plain].roles leaves out thumbnail"} | (
        {"accounts[plain].roles leaves out reference"}
        if any(r["role"] == "reference" for r in plain_rows)
        else set()
    )
    skipped_thumbs = sum(
        s["files"] for s in by_name["plain"]["skipped"] if s["role"] == "thumbnail"
    )
    assert skipped_thumbs == len(thumbs)
    kinds_why = {s["why"] for s in by_name["videos"]["skipped"] if s["role"] != "reference"}
    assert (
        kinds_why
        <= {
            "accounts[videos].kinds leaves out image",
            "accounts[videos].kinds leaves out audio",
        }
        and kinds_why
    )
    table = genvault("--config", str(config), "status", env=ENV)
    assert "skipped (not archived, by choice)" in table.stdout

    # Widening the choice archives the files already known, without a new listing.
    widened = local_config(
        tmp_path,
        [sim_account(plain, "GG_KEY", name="plain"), accounts[1]],
    )
    again = genvault("--config", str(widened), "run", "--once", env=ENV)
    assert again.returncode == 0, again.stderr[-3000:]
    assert all(
        r["state"] == "archived" for r in _rows(tmp_path, "plain") if r["role"] == "thumbnail"
    )


def test_backfill_days_per_account_bounds_its_first_walk(
    tmp_path: Path, start_sim: SimStarter
) -> None:
    recent, everything = _sim(start_sim, 5), _sim(start_sim, 5)
    config = local_config(
        tmp_path,
        [
            sim_account(recent, "GG_KEY", name="recent", backfill_days=3),
            sim_account(everything, "GG_KEY", name="everything"),
        ],
    )
    proc = genvault("--config", str(config), "run", "--once", env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cutoff = datetime.now(UTC) - timedelta(days=3)
    created = {
        g["uuid"]: datetime.fromisoformat(g["created_at"].replace("Z", "+00:00"))
        for g in recent.generations
    }
    old = {u for u, t in created.items() if t < cutoff - timedelta(hours=1)}
    new = {u for u, t in created.items() if t > cutoff + timedelta(hours=1)}
    assert old and new, "the simulator's history should straddle the cutoff"
    store = Store(f"sqlite:///{tmp_path / 'gv.db'}")
    try:
        seen = {
            a: {g["external_id"] for g in store.generations(a)} for a in ("recent", "everything")
        }
    finally:
        store.dispose()
    assert new <= seen["recent"] and not (old & seen["recent"])
    assert old | new <= seen["everything"]


def test_narrowing_the_choice_stops_fetching_what_is_left_out(
    tmp_path: Path, start_sim: SimStarter
) -> None:
    """Files still pending when an account narrows to videos are skipped, not fetched."""
    sim = _sim(start_sim, 6)
    sim.faults.media_truncate = True  # nothing can be archived yet: every file stays pending
    config = local_config(
        tmp_path, [sim_account(sim, "GG_KEY")], network="media_resume_attempts = 0"
    )
    first = genvault("--config", str(config), "run", "--once", env=ENV)
    assert first.returncode == 3, first.stderr[-3000:]
    assert {r["state"] for r in _rows(tmp_path, "main")} <= {"pending", "skipped"}

    sim.faults.media_truncate = False
    narrowed = local_config(
        tmp_path, [sim_account(sim, "GG_KEY", kinds=["video"])], network="media_resume_attempts = 0"
    )
    # the files wait out their retry backoff; `retry` makes them due now, as a user would
    due = genvault("--config", str(narrowed), "retry", "main", env=ENV)
    assert due.returncode == 0, due.stderr
    second = genvault("--config", str(narrowed), "run", "--once", env=ENV)
    assert second.returncode == 0, second.stderr[-3000:]
    assert '"archive.choice_applied"' in second.stderr
    rows = _rows(tmp_path, "main")
    assert any(r["kind"] == "video" and r["state"] == "archived" for r in rows)
    assert all(r["state"] == "skipped" for r in rows if r["kind"] != "video")
