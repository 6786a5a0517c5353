"""The operator commands end to end: ``retry``, ``verify``, ``export``, ``backfill`` and
``run --once --dry-run``, each run as a separate ``genvault`` process against a
GeminiGen simulator on loopback, a SQLite file and a local archive folder."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from threading import Event
from typing import Any

import pytest
from rich.console import Console

from genvault.config import load_settings, resolve_secrets
from genvault.instance import single_process
from genvault.jobs.sync import sync_account
from genvault.ops.backfill import run_backfill
from genvault.records import AssetState
from genvault.runtime import Runtime
from genvault.simulator import geminigen
from genvault.store import Store
from genvault.store.base import A, G
from tests.acceptance.helpers import genvault, local_config
from tests.fixtures.sims import sim_account

API_KEY = "gg-operator-cli-key-61c0"
ENV = {"GG_KEY": API_KEY}


def _sim(**knobs: Any) -> geminigen.GeminiGenSimulator:
    options: dict[str, Any] = {
        "seed": 41,
        "count": 6,
        "image_size": 5_000,
        "video_size": 20_000,
        "audio_size": 4_000,
        "processing_count": 0,
        "failed_count": 0,
    }
    options.update(knobs)
    return geminigen.create(api_key=API_KEY, **options)


@pytest.fixture
def sim() -> Iterator[geminigen.GeminiGenSimulator]:
    s = _sim()
    s.start()
    yield s
    s.stop()


def _account(sim: geminigen.GeminiGenSimulator, **extra: Any) -> dict[str, Any]:
    return sim_account(sim, "GG_KEY", **{"fetch_detail": "always", **extra})


def _store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'gv.db'}")


def _assets(tmp_path: Path) -> list[dict[str, Any]]:
    store = _store(tmp_path)
    try:
        return [a for a in store.assets() if a["state"] != "skipped"]
    finally:
        store.dispose()


def _cli(config: Path, *args: str) -> Any:
    return genvault("--config", str(config), *args, env=ENV)


# --------------------------------------------------------------------------- retry, verify, export


def test_retry_failed_then_run_archives_then_verify_and_export(
    sim: geminigen.GeminiGenSimulator, tmp_path: Path
) -> None:
    config = local_config(tmp_path, [_account(sim)])
    sim.faults.media_error_page = "html"  # every file: an error page, refused for good
    first = _cli(config, "run", "--once")
    assert first.returncode == 3, first.stderr[-2000:]
    files = _assets(tmp_path)
    assert files and {a["state"] for a in files} == {"failed"}

    unknown = _cli(config, "retry", "nobody")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().count("\n") == 0 and "nobody" in unknown.stderr

    with single_process(f"sqlite:///{tmp_path / 'gv.db'}"):  # a daemon runs: retry waits
        busy = _cli(config, "retry", "main", "--failed")
    assert busy.returncode == 5, busy.stderr
    assert "already using" in busy.stderr
    assert {a["state"] for a in _assets(tmp_path)} == {"failed"}

    sim.faults.media_error_page = None
    requeued = _cli(config, "retry", "main", "--failed")
    assert requeued.returncode == 0, requeued.stderr
    assert f"{len(files)} failed file(s) requeued" in requeued.stdout
    again = _cli(config, "run", "--once")
    assert again.returncode == 0, again.stderr[-2000:]
    archived = _assets(tmp_path)
    assert {a["state"] for a in archived} == {"archived"}

    clean = _cli(config, "verify")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert (
        f"{len(archived)} archived file(s) read back" in clean.stdout
        and "all match" in clean.stdout
    )

    root = tmp_path / "archive"
    gone, spoiled = archived[0]["storage_key"], archived[1]["storage_key"]
    (root / gone).unlink()
    data = bytearray((root / spoiled).read_bytes())
    data[0] ^= 0x01
    with (root / spoiled).open("r+b") as fh:  # in place: same size, same xattr
        fh.write(bytes(data))
    broken = _cli(config, "verify", "--json")
    assert broken.returncode == 6, broken.stdout + broken.stderr
    doc = json.loads(broken.stdout)
    assert doc["ok"] is False and doc["checked"] == len(archived)
    assert {(p["kind"], p["key"]) for p in doc["problems"]} == {
        ("missing", gone),
        ("sha256_mismatch", spoiled),
    }

    repaired = _cli(config, "verify", "--repair")  # queue both to be fetched again
    assert repaired.returncode == 6, repaired.stdout + repaired.stderr
    assert "2 file(s) queued to be downloaded again" in repaired.stdout
    assert _cli(config, "run", "--once").returncode == 0
    assert _cli(config, "verify").returncode == 0  # the bad objects were replaced
    assert {a["state"] for a in _assets(tmp_path)} == {"archived"}

    out = tmp_path / "export.csv"
    exported = _cli(config, "export", "--format", "csv", "--output", str(out))
    assert exported.returncode == 0, exported.stderr
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    store = _store(tmp_path)
    every_file = len(store.assets())  # skipped references are listed too
    store.dispose()
    assert len(rows) == 6 and f"exported 6 generation(s), {every_file} file(s)" in exported.stderr
    keys = {f["key"] for r in rows for f in json.loads(r["files"]) if f["state"] == "archived"}
    assert keys == {a["storage_key"] for a in archived}


# --------------------------------------------------------------------------- dry run


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path) -> None:
    sim = _sim(count=30, processing_count=2, processing_seconds=600)
    sim.start()
    try:
        config = local_config(tmp_path, [_account(sim, items_per_page=7)])
        # A walk interrupted after its first page: 7 generations known, the rest new.
        settings = load_settings(config, environ=ENV)
        rt = Runtime.build(settings, resolve_secrets(settings, ENV))
        stop = Event()
        try:
            sync_account(rt, rt.accounts["main"], stop=stop, on_page=lambda _p, _r: stop.set())
            pending = rt.store.count_assets(AssetState.PENDING)
        finally:
            rt.close()
        assert pending > 0
        db = tmp_path / "gv.db"
        before, files_before = _digest(db), _tree(tmp_path)
        sim.stats.reset()

        proc = _cli(config, "run", "--once", "--dry-run")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out = proc.stdout
        assert "dry run: nothing will be written" in out
        assert "account main (geminigen)" in out
        assert "resuming an unfinished walk at 1" in out
        assert "3 page(s) read, 21 items: 14 new, 0 changed, 7 known" in out
        assert "more pages follow" in out
        assert "tasks due for a status read: 7" in out
        assert f"archive plan: {pending} file(s) to download now" in out
        assert "deadline " in out

        assert _digest(db) == before, "the database file changed"
        assert _tree(tmp_path) == files_before, "a file was created or removed"
        assert not (tmp_path / "archive").exists()
        stats = sim.stats.snapshot()
        assert stats["routes"] == {"histories": 3}, stats  # listing GETs, nothing else
        assert stats["media_bytes"] == 0 and not stats["media_hits"]
    finally:
        sim.stop()


def test_dry_run_without_a_database_says_so_and_creates_none(tmp_path: Path) -> None:
    config = local_config(tmp_path, [_account(_sim())])
    proc = _cli(config, "run", "--once", "--dry-run")
    assert proc.returncode == 2
    assert "database.url" in proc.stderr and "no genvault database" in proc.stderr
    assert not (tmp_path / "gv.db").exists() and list(tmp_path.iterdir()) == [config]


# --------------------------------------------------------------------------- backfill


def test_backfill_walks_past_the_cursor_and_archives_what_it_finds(tmp_path: Path) -> None:
    sim = _sim(count=24)
    sim.start()
    try:
        config = local_config(
            tmp_path,
            [
                _account(sim, items_per_page=6),
                {"name": "ak", "provider": "akool", "api_key_env": "GG_KEY"},
            ],
            extra="[sync]\noverlap_seconds = 0",
        )
        assert _cli(config, "run", "--once").returncode == 0
        store = _store(tmp_path)
        try:
            oldest = [g["external_id"] for g in store.generations()][-5:]  # the last page
            with store.tx() as conn:
                ids = [g["id"] for g in store.generations() if g["external_id"] in oldest]
                conn.execute(A.delete().where(A.c.generation_id.in_(ids)))
                conn.execute(G.delete().where(G.c.id.in_(ids)))
            assert _cli(config, "run", "--once").returncode == 0
            assert len(store.generations()) == 19, "an incremental pass went past the cursor"
        finally:
            store.dispose()

        proc = _cli(config, "backfill", "main")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        summary = proc.stdout.strip().splitlines()[-1]
        assert summary.startswith("backfill: 1 account(s), 4 pages, 24 items (5 new)"), summary
        assert "\x1b[" not in proc.stdout  # no terminal: no progress bar
        assert {a["state"] for a in _assets(tmp_path)} == {"archived"}
        store = _store(tmp_path)
        try:
            assert len(store.generations()) == 24
        finally:
            store.dispose()

        everyone = _cli(config, "backfill", "--since", "2d")
        assert everyone.returncode == 0, everyone.stdout + everyone.stderr
        assert "ak: akool has no history listing, skipped" in everyone.stdout
        last = everyone.stdout.strip().splitlines()[-1]
        assert "(0 new)" in last and " 24 items" not in last, last  # --since stopped the walk

        # On a terminal: the live display of the walk and of the archive
        store = _store(tmp_path)
        try:
            with store.tx() as conn:
                newest = store.generations()[-1]
                conn.execute(A.delete().where(A.c.generation_id == newest["id"]))
                conn.execute(G.delete().where(G.c.id == newest["id"]))
        finally:
            store.dispose()
        settings = load_settings(config, environ=ENV)
        screen = io.StringIO()
        lines: list[str] = []
        code = run_backfill(
            settings,
            resolve_secrets(settings, ENV),
            account="main",
            since=None,
            console=Console(file=screen, force_terminal=True, width=160),
            echo=lines.append,
        )
        assert code == 0
        shown = screen.getvalue()
        assert "paging main" in shown and "4 pages, 24 items (1 new)" in shown
        assert "\x1b[" in shown  # drawn for a terminal
        files = [a for a in _assets(tmp_path) if a["external_id"] == newest["external_id"]]
        assert files and {a["state"] for a in files} == {"archived"}
        assert "archiving" in shown and f"{len(files)}/{len(files)} files" in shown
        assert lines[-1].startswith("backfill: 1 account(s), 4 pages, 24 items (1 new)")
    finally:
        sim.stop()
