"""The CLI contract: demo, exit codes, config errors, the daemon's SIGTERM, track, db upgrade."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from genvault.demo import demo_pipeline
from genvault.simulator import SIMULATORS, geminigen
from genvault.store import Store, url_key
from tests.acceptance.helpers import GENVAULT, genvault, write_config


def test_demo_command_runs_clean_from_a_fresh_directory(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = genvault("demo", "--dir", str(tmp_path / "demo"), "--count", "6", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "done in" in proc.stdout and " 0 lost" in proc.stdout and " 0 pending" in proc.stdout
    assert time.monotonic() - started < 60
    assert (tmp_path / "demo" / "genvault.db").exists()
    status = genvault("--config", str(tmp_path / "demo" / "genvault.toml"), "status", "--json")
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert len(doc["accounts"]) == len(SIMULATORS)
    assert all(a["assets"].get("archived", 0) > 0 for a in doc["accounts"])


def test_demo_archives_every_simulated_file_byte_identical(tmp_path: Path) -> None:
    """Every provider's simulator truth against what landed on disk, file by file."""
    demo_dir = tmp_path / "demo"
    result, truth, _ = demo_pipeline(
        demo_dir, count=10, timeout=90, console=Console(file=io.StringIO())
    )
    assert result.lost == 0 and result.pending == 0
    assert set(truth) == {f"demo-{name}" for name in SIMULATORS}
    store = Store(f"sqlite:///{demo_dir / 'genvault.db'}")
    rows = store.assets()
    store.dispose()
    for account, files in truth.items():
        now = datetime.now(UTC)
        wanted = {
            url_key(f.url): f
            for f in files
            if f.role != "reference" and (f.expires_at is None or f.expires_at > now)
        }
        assert wanted, f"{account}: the simulator served nothing"
        archived = {
            url_key(r["source_url"]): r
            for r in rows
            if r["account"] == account and r["state"] == "archived"
        }
        assert set(wanted) <= set(archived), account
        for key, exp in wanted.items():
            stored = demo_dir / "archive" / archived[key]["storage_key"]
            assert hashlib.sha256(stored.read_bytes()).hexdigest() == exp.sha256, exp.url


def test_config_errors_exit_2_with_one_line_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[archive]\nconcurrency = "many"\n')
    proc = genvault("--config", str(bad), "status")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "archive.concurrency" in proc.stderr

    bad.write_text('[database]\nurl = "sqlite:///x.db"\n[databse]\nurl = "oops"\n')
    proc = genvault("--config", str(bad), "status")
    assert proc.returncode == 2 and "databse" in proc.stderr

    missing_secret = write_config(
        tmp_path / "ok.toml",
        db_url=f"sqlite:///{tmp_path / 'gv.db'}",
        storage_url=f"file://{tmp_path / 'a'}",
        accounts=[{"name": "main", "provider": "geminigen", "api_key_env": "NOPE_NOT_SET"}],
    )
    env = {k: v for k, v in os.environ.items() if k != "NOPE_NOT_SET"}
    proc = subprocess.run(
        [*GENVAULT, "--config", str(missing_secret), "run", "--once"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "accounts[main].api_key_env" in proc.stderr and "NOPE_NOT_SET" in proc.stderr

    proc = genvault("--config", str(tmp_path / "absent.toml"), "status")
    assert proc.returncode == 2 and "not found" in proc.stderr


def test_env_override_reaches_the_running_config(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "c.toml",
        db_url=f"sqlite:///{tmp_path / 'a.db'}",
        storage_url=f"file://{tmp_path / 'a'}",
        accounts=[],
    )
    proc = genvault(
        "--config",
        str(cfg),
        "db",
        "upgrade",
        env={"GENVAULT_DATABASE__URL": f"sqlite:///{tmp_path / 'b.db'}"},
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "b.db").exists() and not (tmp_path / "a.db").exists()


def test_help_lists_the_commands() -> None:
    proc = genvault("--help")
    assert proc.returncode == 0
    for cmd in ("run", "status", "demo", "track", "db"):
        assert cmd in proc.stdout


def test_track_registers_ids_once(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "c.toml",
        db_url=f"sqlite:///{tmp_path / 'gv.db'}",
        storage_url=f"file://{tmp_path / 'a'}",
        accounts=[{"name": "main", "provider": "geminigen", "api_key_env": "X"}],
    )
    ids = tmp_path / "ids.txt"
    ids.write_text('# from our submit log\nabc-1\n{"id": "abc-2", "prompt": "a cat"}\n')
    first = genvault("--config", str(cfg), "track", "main", "abc-0", "--from-file", str(ids))
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("3 new")
    again = genvault("--config", str(cfg), "track", "main", "abc-0", "abc-1")
    assert again.stdout.startswith("0 new")
    store = Store(f"sqlite:///{tmp_path / 'gv.db'}")
    gens = {g["external_id"]: g for g in store.generations()}
    store.dispose()
    assert set(gens) == {"abc-0", "abc-1", "abc-2"}
    assert gens["abc-2"]["prompt"] == "a cat"
    assert all(g["next_poll_at"] is not None and g["status"] == "queued" for g in gens.values())


def test_daemon_archives_then_exits_0_on_sigterm_and_releases_leases(tmp_path: Path) -> None:
    sim = geminigen.create(
        api_key="k-daemon-123456",
        seed=3,
        count=20,
        image_size=20_000,
        video_size=100_000,
        processing_seconds=0.3,
    )
    sim.start()
    try:
        cfg = write_config(
            tmp_path / "c.toml",
            db_url=f"sqlite:///{tmp_path / 'gv.db'}",
            storage_url=f"file://{tmp_path / 'a'}",
            accounts=[
                {
                    "name": "main",
                    "provider": "geminigen",
                    "api_key_env": "GG",
                    "base_url": sim.api_base,
                    **sim.account_options,
                }
            ],
            extra="[schedule]\nsync_seconds = 2\npoll_seconds = 1\narchive_seconds = 1\n"
            "jitter_seconds = 0\nshutdown_grace_seconds = 5\n",
        )
        env = {**os.environ, "GG": "k-daemon-123456"}
        proc = subprocess.Popen(
            [*GENVAULT, "--config", str(cfg), "run"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        store = Store(f"sqlite:///{tmp_path / 'gv.db'}")
        deadline = time.monotonic() + 40
        archived = 0
        while time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                polling, pending = store.outstanding_work()
                archived = sum(1 for a in store.assets() if a["state"] == "archived")
            except Exception:  # the daemon may still be creating the schema
                continue
            if archived and polling == 0 and pending == 0:
                break
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err[-3000:]
        assert archived > 0, err[-3000:]
        assert "daemon.stopped" in err
        assert all(a["lease_owner"] is None for a in store.assets())
        store.dispose()
    finally:
        sim.stop()
