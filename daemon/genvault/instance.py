"""One genvault process per SQLite database.

SQLite is the embedded, single-process default: two daemons on one database
file would both sync the same accounts and fight over its single writer lock.
So ``genvault run`` (daemon or ``--once``), ``demo`` and ``backfill`` hold an
exclusive ``flock`` on ``<database>.lock`` for as long as they run, and a second
one refuses to start with a message that names the holder and says what to do.
Replicas need PostgreSQL, where leases and advisory locks share the work.

``flock`` is released by the kernel when the process dies, ``kill -9``
included, so a crash never leaves a stale lock behind; the PID written into the
file is only there for the message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import make_url

from genvault.errors import AlreadyRunningError


def sqlite_path(database_url: str) -> Path | None:
    """The file behind a ``sqlite:///`` URL; None for PostgreSQL or an in-memory database."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return None
    if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        return None
    return Path(url.database).expanduser().resolve()


@contextlib.contextmanager
def single_process(database_url: str) -> Iterator[None]:
    """Hold the database's process lock while the block runs (no-op on PostgreSQL)."""
    db = sqlite_path(database_url)
    if db is None:
        yield
        return
    lock_path = db.with_name(db.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise AlreadyRunningError(
                f"another genvault process (pid {holder}) is already using {db}: SQLite is "
                "single-process; stop it first, or move [database] url to PostgreSQL to run "
                "several replicas"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor drops the flock
