"""One genvault process per SQLite database: the lock, its message, and the CLI's exit 5."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from genvault.errors import AlreadyRunningError
from genvault.instance import single_process, sqlite_path
from tests.acceptance.helpers import genvault, write_config
from tests.fixtures.lock_holder import hold_lock


def test_sqlite_path_of_each_kind_of_url(tmp_path: Path) -> None:
    assert sqlite_path(f"sqlite:///{tmp_path / 'gv.db'}") == tmp_path / "gv.db"
    assert sqlite_path("sqlite:///relative.db") == Path.cwd() / "relative.db"
    assert sqlite_path("sqlite://") is None
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("postgresql+psycopg://u@h/db") is None


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gv.db'}"
    with single_process(url):
        with pytest.raises(AlreadyRunningError) as err, single_process(url):
            pass
        message = str(err.value)
        assert f"pid {os.getpid()}" in message
        assert str(tmp_path / "gv.db") in message and "PostgreSQL" in message
    with single_process(url):  # released on exit: the next process may start
        pass


def test_other_databases_and_postgres_are_not_locked(tmp_path: Path) -> None:
    with (
        single_process(f"sqlite:///{tmp_path / 'a.db'}"),
        single_process(f"sqlite:///{tmp_path / 'b.db'}"),
        single_process("postgresql+psycopg://u@h/db"),
        single_process("postgresql+psycopg://u@h/db"),
    ):
        pass


def test_kill_9_of_the_holder_frees_the_database(tmp_path: Path) -> None:
    """No stale lock file to clean up by hand after a crash: the kernel drops the flock."""
    url = f"sqlite:///{tmp_path / 'gv.db'}"
    holder = hold_lock(url, 120)
    try:
        with pytest.raises(AlreadyRunningError, match=f"pid {holder.pid}"), single_process(url):
            pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        with single_process(url):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_run_once_beside_a_running_genvault_exits_5_with_one_line(tmp_path: Path) -> None:
    db = tmp_path / "gv.db"
    config = write_config(
        tmp_path / "genvault.toml",
        db_url=f"sqlite:///{db}",
        storage_url=f"file://{tmp_path / 'archive'}",
        accounts=[{"name": "main", "provider": "geminigen", "api_key_env": "GV_KEY"}],
    )
    with single_process(f"sqlite:///{db}"):
        proc = genvault("--config", str(config), "run", "--once", env={"GV_KEY": "k" * 20})
    assert proc.returncode == 5, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("genvault: another genvault process (pid ")
    assert "single-process" in line
    assert not (tmp_path / "archive").exists()  # nothing was done
