"""The CLI contract: demo, exit codes, config errors, the daemon's SIGTERM, track, db upgrade,
and ``status`` naming every incomplete history stream."""

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
from typing import Any

from rich.console import Console

from genvault.config import load_settings
from genvault.identity import url_key
from genvault.ops.demo import (
    DEMO_KEY,
    DEMO_KEY_ENV,
    demo_pipeline,
    demo_settings,
    start_simulators,
    write_demo_config,
)
from genvault.providers.registry import provider_class
from genvault.simulator import SIMULATORS, crowdcomputed, geminigen
from genvault.store import Store
from tests.acceptance.helpers import GENVAULT, genvault, sim_account, write_config
from tests.integration import stream_world
from tests.integration.stream_world import DRIFT, EXPECTED, REJECTED_ERROR, figures


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


def test_the_demo_config_reproduces_the_demo(tmp_path: Path) -> None:
    """The written config holds every setting the demo ran with, base URLs and options
    included: loaded back it equals the demo's settings, and a dry run on it reaches the
    demo's simulators, never the providers' real hosts."""
    sims = start_simulators(2)
    try:
        settings = demo_settings(tmp_path, sims)
        path = write_demo_config(tmp_path, settings)
        assert load_settings(path, environ={DEMO_KEY_ENV: DEMO_KEY}) == settings
        env = {**os.environ, DEMO_KEY_ENV: DEMO_KEY}
        upgraded = genvault("--config", str(path), "db", "upgrade", env=env)
        assert upgraded.returncode == 0, upgraded.stderr
        dry = genvault("--config", str(path), "run", "--once", "--dry-run", env=env)
        assert dry.returncode == 0, dry.stdout + dry.stderr
        listed = [n for n in sims if provider_class(n).has_history]
        assert listed
        for name in listed:
            assert sims[name].stats.requests > 0, f"{name}: the dry run never reached it"
    finally:
        for sim in sims.values():
            sim.stop()


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


def test_help_lists_every_command() -> None:
    """``--help`` lists every registered command (``COMMANDS``, which
    ``tests/unit/test_cli_registry.py`` proves complete), each with its own help."""
    from genvault.cli import COMMANDS, load_command

    proc = genvault("--help")
    assert proc.returncode == 0
    rows = dict(
        line.strip().split(None, 1)
        for line in proc.stdout.split("Commands:", 1)[1].splitlines()
        if line.strip()
    )
    assert set(rows) == set(COMMANDS)
    for name, listed in rows.items():
        full = load_command(name).get_short_help_str(limit=1000)
        assert full.startswith(listed.removesuffix("...")), (name, listed, full)


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
            accounts=[sim_account(sim, "GG")],
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


# --------------------------------------------------------------------------- completeness


def _stream_config(tmp_path: Path) -> Path:
    """CrowdComputed with four workflows (one never walked), GeminiGen, Akool (no listing)."""
    return write_config(
        tmp_path / "c.toml",
        db_url=f"sqlite:///{tmp_path / 'gv.db'}",
        storage_url=f"file://{tmp_path / 'a'}",
        accounts=[
            {
                "name": "cc",
                "provider": "crowdcomputed",
                "api_key_env": "X",
                "workflows": ["wf-ok", "wf-rejected", "wf-lossy", "wf-later"],
            },
            {"name": "gg", "provider": "geminigen", "api_key_env": "X"},
            {"name": "ak", "provider": "akool", "api_key_env": "X"},
        ],
    )


def _status_json(cfg: Path) -> dict[str, dict[str, Any]]:
    proc = genvault("--config", str(cfg), "status", "--json")
    assert proc.returncode == 0, proc.stderr
    return {a["name"]: a for a in json.loads(proc.stdout)["accounts"]}


def test_status_on_an_empty_database_lists_the_configured_streams_unwalked(
    tmp_path: Path,
) -> None:
    accounts = _status_json(_stream_config(tmp_path))
    cc, gg, ak = accounts["cc"], accounts["gg"], accounts["ak"]
    assert [s["stream"] for s in cc["streams"]] == ["wf-later", "wf-lossy", "wf-ok", "wf-rejected"]
    for s in [*cc["streams"], *gg["streams"]]:
        assert (s["complete"], s["known"], s["listed"], s["last_complete_walk_at"]) == (
            False,
            0,
            None,
            None,
        )
        assert s["problems"] == ["never walked to the end"]
    assert [s["stream"] for s in gg["streams"]] == ["all"]
    assert (cc["complete"], gg["complete"]) == (False, False)
    assert ak["streams"] == [] and ak["complete"] is True, "no listing, nothing tracked"


def test_status_names_each_incomplete_stream_in_json_and_table(tmp_path: Path) -> None:
    cfg = _stream_config(tmp_path)
    store = Store(f"sqlite:///{tmp_path / 'gv.db'}")
    store.upgrade()
    world = stream_world.build(store)
    store.dispose()

    accounts = _status_json(cfg)
    assert (accounts["cc"]["complete"], accounts["gg"]["complete"]) == (False, True)
    assert accounts["ak"]["complete"] is True
    for name in ("cc", "gg"):
        for s in accounts[name]["streams"]:
            key = (name, s["stream"])
            if key == ("cc", "wf-later"):
                assert not s["complete"] and s["known"] == 0
                continue
            assert figures(s) == EXPECTED[key], key
            walked = world.walked.get(key)
            assert s["last_complete_walk_at"] == (walked.isoformat() if walked else None)
            if walked is not None:
                age = (datetime.now(UTC) - walked).total_seconds()
                assert age - 60 < s["last_complete_walk_age_seconds"] <= age
            assert (not s["problems"]) is s["complete"], key
    by = {s["stream"]: s for s in accounts["cc"]["streams"]}
    assert by["wf-rejected"]["problems"] == [
        f"sync error: {REJECTED_ERROR}",
        "never walked to the end",
    ]
    assert by["wf-lossy"]["problems"] == [
        f"last walk incomplete: {DRIFT}",
        "2 missing files (failed or lost)",
    ]
    assert by["(tracked)"]["problems"] == ["1 missing file (failed or lost)"]
    assert by["wf-lossy"]["walking"] and by["wf-lossy"]["order_seen"] == "unsorted"
    full = by["wf-ok"]["last_full_walk_at"]
    assert full == world.full_walked[("cc", "wf-ok")].isoformat()

    proc = genvault("--config", str(cfg), "status")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()

    def row(*cells: str) -> str:
        """The one table line whose cells include ``cells``."""
        found = [ln for ln in lines if set(cells) <= {c.strip() for c in ln.split("│")}]
        assert len(found) == 1, (cells, proc.stdout)
        return found[0]

    assert "no: 4 streams" in row("cc", "crowdcomputed")
    assert " yes " in row("gg", "geminigen")
    assert "streams (completeness per history listing)" in proc.stdout
    rejected = row("cc", "wf-rejected")
    assert "sync error: BusinessError" in rejected and " never " in rejected
    lossy = [c.strip() for c in row("cc", "wf-lossy").split("│")]
    assert lossy[3:9] == ["5", "2", "1", "2", "2", "2"]  # listed … gone before capture
    assert "last walk incomplete" in lossy[10]
    ok = [c.strip() for c in row("cc", "wf-ok").split("│")]
    assert ok[3:9] == ["3", "2", "4", "0", "0", "0"] and ok[10] == "complete"
    assert "(30m ago)" in ok[9] or "(31m ago)" in ok[9]
    assert "1 missing file" in row("cc", "(tracked)")
    assert "never walked to the end" in row("cc", "wf-later")


def test_a_workflow_the_provider_rejects_is_named_in_status(tmp_path: Path) -> None:
    """End to end: the CrowdComputed simulator answers ``invalid params`` for a workflow it
    does not know; after ``run --once`` the table, the json and the account say so, by name."""
    key = "cc-rejected-key-7a1e"
    sim = crowdcomputed.create(
        api_key=key,
        seed=8,
        count=6,
        workflows=("text-to-image", "upscaler"),
        image_size=4_000,
        processing_count=0,
        failed_count=0,
        empty_count=0,
    )
    sim.start()
    try:
        cfg = write_config(
            tmp_path / "c.toml",
            db_url=f"sqlite:///{tmp_path / 'gv.db'}",
            storage_url=f"file://{tmp_path / 'a'}",
            accounts=[
                {
                    **sim_account(sim, "CC_KEY", name="cc"),
                    "workflows": ["text-to-image", "text-to-3d", "upscaler"],
                }
            ],
        )
        genvault("--config", str(cfg), "run", "--once", env={"CC_KEY": key}, timeout=120)
    finally:
        sim.stop()

    cc = _status_json(cfg)["cc"]
    assert cc["complete"] is False
    by = {s["stream"]: s for s in cc["streams"]}
    rejected = by["text-to-3d"]
    assert rejected["complete"] is False and "invalid params" in rejected["error"]
    assert rejected["problems"][0] == f"sync error: {rejected['error']}"
    assert by["text-to-image"]["complete"] is True and by["text-to-image"]["error"] is None
    # the workflow after it is listed either way: walked (each stream fails alone) or, if
    # the pass stopped at the rejected one, as never walked to the end
    upscaler = by["upscaler"]
    assert upscaler["complete"] is (upscaler["last_complete_walk_at"] is not None)

    table = genvault("--config", str(cfg), "status")
    assert table.returncode == 0, table.stderr
    (row,) = [ln for ln in table.stdout.splitlines() if "│ text-to-3d" in ln]
    assert "sync error: BusinessError" in row  # the rest of the error wraps in its cell
    (account,) = [ln for ln in table.stdout.splitlines() if "│ crowdcomputed" in ln]
    assert "no: " in account and "yes" not in account
