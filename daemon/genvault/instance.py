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

Holding the lock is also what makes a dead run's leases safe to void: the
process that holds it is the only one on the database, so when it starts
(:meth:`genvault.runtime.Runtime.build`, see :func:`holds_process_lock`) every
lease of another worker belongs to a run that was killed, and is cleared at once
instead of waiting ``archive.lease_seconds`` for it to expire. ``status`` asks
:func:`lock_held` whether anyone runs at all, to tell files being archived from
files waiting.
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


_HELD: set[Path] = set()
"""Databases whose lock this process holds (inside :func:`single_process`)."""


def holds_process_lock(database_url: str) -> bool:
    """Whether this process holds the lock of the SQLite database at ``database_url``."""
    db = sqlite_path(database_url)
    return db is not None and db in _HELD


def lock_held(database_url: str) -> bool:
    """Whether any process holds the SQLite database's lock right now, without taking it.

    Taking the lock for an instant to find out would make a daemon that starts at
    that instant refuse to run, so this reads the kernel's table of file locks
    (``/proc/locks``: ``FLOCK`` lines name the locked file by device and inode).
    When that table does not show it (there is none, or the file sits on a filesystem
    that reports another device there, like overlayfs), the PID written into the lock
    file is checked instead (a clean exit empties the file; a killed holder's PID stays,
    and counts only while a process by that number lives). False for PostgreSQL and for
    a database that never ran.
    """
    db = sqlite_path(database_url)
    if db is None:
        return False
    if db in _HELD:
        return True
    lock_path = db.with_name(db.name + ".lock")
    try:
        st = lock_path.stat()
    except FileNotFoundError:
        return False
    try:
        table = Path("/proc/locks").read_text()
    except OSError:
        return _pid_alive(lock_path)
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    listed = any(  # "1: FLOCK  ADVISORY  WRITE <pid> <maj>:<min>:<inode> 0 EOF"
        line.split()[1:2] == ["FLOCK"] and wanted in line.split() for line in table.splitlines()
    )
    return listed or _pid_alive(lock_path)


def _pid_alive(lock_path: Path) -> bool:
    try:
        pid = int(lock_path.read_text().strip() or 0)
    except (OSError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


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
        _HELD.add(db)
        try:
            yield
        finally:
            _HELD.discard(db)
            os.ftruncate(fd, 0)  # no PID: nobody holds it (see lock_held)
    finally:
        os.close(fd)  # closing the descriptor drops the flock
