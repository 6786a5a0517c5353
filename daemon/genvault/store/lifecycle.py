"""The store's engine and its locks: opening the database, migrating it, who works on what.

One engine per :class:`~genvault.store.Store` (SQLite in WAL mode, or PostgreSQL)
and its write transaction (:meth:`Lifecycle.tx`); Alembic migrations at every
start (skipped, with Alembic unloaded, when the schema is at head); and the
advisory locks that keep PostgreSQL replicas apart: one per job and account for a
sync or poll pass (:meth:`Lifecycle.account_lock`), and each worker's own lock,
held for the process's life, that ties its leases to it
(:meth:`Lifecycle.hold_worker_lock`; the leases of a worker whose lock is gone are
freed by :mod:`genvault.store.dead_leases`). The dialect differences of setting up
a connection (pragmas, ``BEGIN IMMEDIATE``, keepalives) live here.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from genvault.logs import get_logger
from genvault.store.base import StoreBase, lock_key

log = get_logger("genvault.store")

MIGRATIONS = Path(__file__).parent.parent / "migrations"
SCHEMA_HEAD: Final = "0005"
LOCK_RETRY_SECONDS: Final = 0.25
"""How often :meth:`Lifecycle.account_lock` asks again while it waits for a peer."""
"""The newest migration's revision. Known without Alembic so that a start on a
database already at head (every start but the first after an upgrade) skips
loading Alembic, its script directory and Mako: ~10 MB of resident memory and
~0.1 s. ``tests/integration/test_lean_start.py`` checks it against Alembic's own head,
so a new migration that forgets to bump it fails the tests."""

WORKER_LOCK_TAG: Final = "+lock"
"""Ends every worker id whose leases are tied to its worker lock (see
:meth:`Lifecycle.hold_worker_lock`); a lease owner without it is an older genvault's,
which holds no lock and is left to expire."""

_LOCK_KEEPALIVES: Final[dict[str, Any]] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 25_000,
}
"""libpq options of the worker lock's connection: a ping over a cut network fails in
~25 s instead of hanging the archive pass for the kernel's retransmission timeout."""

_SERVER_KEEPALIVES: Final = (
    "SELECT set_config('tcp_keepalives_idle', '10', false),"
    " set_config('tcp_keepalives_interval', '5', false),"
    " set_config('tcp_keepalives_count', '3', false),"
    " CASE WHEN current_setting('server_version_num')::int >= 120000"
    " THEN set_config('tcp_user_timeout', '25000', false) END"
)
"""The same on the server's side of that connection (session settings any role may
change): the server notices a host that vanished, and drops its lock, within ~25 s."""


class Lifecycle(StoreBase):
    """The engine, migrations and locks of the store (every other mixin works through them)."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine: Engine = sa.create_engine(
                url,
                echo=echo,
                connect_args={"check_same_thread": False, "timeout": 30},
                # Pooled: a fresh connection per transaction cost ~4 ms (pragmas, and a
                # WAL checkpoint when the last one closes) against ~1.5 ms kept open.
                pool_size=4,
                max_overflow=16,
            )
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            sa.event.listen(self.engine, "begin", _sqlite_begin)
        else:
            # A host that drops packets instead of refusing would stall every caller
            # (a /metrics scrape, a readiness probe) for the kernel's TCP timeout.
            timeout = {} if "connect_timeout" in url else {"connect_timeout": 10}
            self.engine = sa.create_engine(
                url,
                echo=echo,
                pool_pre_ping=True,
                pool_size=4,
                max_overflow=8,
                connect_args=timeout,
            )
        self._locks: Engine | None = None
        self._worker_lock: tuple[str, Connection] | None = None
        self._worker_engine: Engine | None = None
        self._worker_mutex = threading.Lock()

    def upgrade(self) -> None:
        """Apply Alembic migrations up to head (idempotent; run at every start).

        Replicas that start together would race to create the same tables: on
        PostgreSQL the migration runs under a transaction-level advisory lock, so
        the first one migrates and the others find the schema at head.
        """
        if self.schema_revision() == SCHEMA_HEAD:
            return  # the usual start: nothing to apply, and Alembic stays unloaded
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.tx() as conn:
            if not self.is_sqlite:  # SQLite: BEGIN IMMEDIATE already serialises writers
                conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key("migrate")}
                )
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at; None when it was never migrated.

        Read-only commands (``verify``, ``export``, the dry run) check it instead of
        upgrading: they must not change the database, not even create it.
        """
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            row = conn.execute(sa.text("SELECT version_num FROM alembic_version")).first()
        return str(row[0]) if row is not None else None

    def check(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def dispose(self) -> None:
        self.drop_worker_lock()
        self.engine.dispose()
        if self._locks is not None:
            self._locks.dispose()

    @contextmanager
    def account_lock(self, job: str, account: str, *, wait: float = 0.0) -> Iterator[bool]:
        """Yield True when this process may run ``job`` ("sync", "poll") for ``account`` now.

        On PostgreSQL several replicas share one database: the lock is a
        session-level ``pg_try_advisory_lock`` held on a connection of its own for
        the whole pass, so no two replicas page (or poll) the same account at once.
        By default it never waits: a replica that finds it taken skips the pass,
        because the holder is doing that very work. With ``wait`` it tries again for up
        to that many seconds: for a pass that must not end before the work it made due
        is done (a ``run --once`` whose own sync just saved items a peer's poll pass,
        begun earlier, may not have seen). A killed holder's connection drops and the
        server releases the lock with it. On SQLite there is one process per database
        (see :mod:`genvault.instance`), so the answer is always yes.
        """
        if self.is_sqlite:
            yield True
            return
        key = lock_key(job, account)
        with self._lock_engine().connect() as conn:
            deadline = time.monotonic() + wait
            while True:
                got = bool(
                    conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
                )
                conn.commit()
                if got or time.monotonic() >= deadline:
                    break
                time.sleep(LOCK_RETRY_SECONDS)
            try:
                yield got
            finally:
                if got:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()

    def account_lock_taken(self, job: str, account: str) -> bool:
        """Whether some session holds ``account``'s ``job`` lock right now.

        A pure read of ``pg_locks``: peeking by taking the lock for a moment would make
        a peer that asks at that instant skip its pass, believing someone else runs it.
        A bigint advisory key shows up split into ``classid`` (high 32 bits) and
        ``objid`` (low 32 bits) with ``objsubid = 1``.
        """
        if self.is_sqlite:
            return False
        key = lock_key(job, account) & 0xFFFFFFFFFFFFFFFF
        with self.engine.connect() as conn:
            return bool(
                conn.execute(
                    sa.text(
                        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
                        " AND database = (SELECT oid FROM pg_database"
                        " WHERE datname = current_database())"
                        " AND classid::text::bigint = :hi AND objid::text::bigint = :lo"
                        " AND objsubid = 1 AND granted)"
                    ),
                    {"hi": key >> 32, "lo": key & 0xFFFFFFFF},
                ).scalar()
            )

    def _lock_engine(self) -> Engine:
        # Locks live on connections of their own (closed after each pass), so a long
        # sync never holds one of the pool's connections nor loses its lock to a
        # pool reset.
        if self._locks is None:
            self._locks = sa.create_engine(self.url, poolclass=NullPool)
        return self._locks

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """A write transaction (on SQLite: BEGIN IMMEDIATE, so writers queue up front)."""
        with self.engine.connect() as conn:
            conn.info["genvault_write"] = True
            try:
                with conn.begin():
                    yield conn
            finally:
                conn.info.pop("genvault_write", None)

    def hold_worker_lock(self, owner: str) -> bool:
        """PostgreSQL: make sure this process holds ``owner``'s worker lock; True when it
        was taken just now (first use, or again after its connection was lost).

        The lock (``pg_try_advisory_lock`` on :func:`worker_lock_key`) lives on a
        connection of its own, kept open until :meth:`dispose` (or
        :meth:`drop_worker_lock`). Every call pings that connection: if it died (a
        server restart, a network cut, an idle-session timeout), the lock is gone and
        the reaper may already have freed ``owner``'s leases, so it is taken again on a
        new connection and True tells the caller to re-assert the leases it still
        works on (:meth:`~genvault.store.dead_leases.DeadLeases.reclaim_leases`). The
        session asks the server for TCP keepalives, so the lock of a host that vanished
        without closing its connections goes within ~25 s instead of the kernel's two
        hours.

        A no-op returning False on SQLite (the process lock plays this part).
        """
        if self.is_sqlite:
            return False
        if not owner.endswith(WORKER_LOCK_TAG):
            raise ValueError(f"worker id {owner!r} lacks {WORKER_LOCK_TAG!r}: see new_worker_id")
        with self._worker_mutex:
            held = self._worker_lock
            if held is not None:
                held_owner, conn = held
                if held_owner == owner:
                    try:
                        conn.execute(sa.text("SELECT 1"))
                        conn.commit()
                        return False
                    except sa.exc.SQLAlchemyError as exc:
                        log.warning("lease.worker_lock_lost", worker=owner, error=str(exc)[:300])
                self._close_worker_lock()
            chosen = sa.engine.make_url(self.url).query  # options in the URL win
            engine = sa.create_engine(
                self.url,
                poolclass=NullPool,
                connect_args={k: v for k, v in _LOCK_KEEPALIVES.items() if k not in chosen},
            )
            conn = engine.connect()
            try:
                conn.execute(sa.text(_SERVER_KEEPALIVES))
                got = conn.execute(
                    sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": worker_lock_key(owner)}
                ).scalar()
                conn.commit()
                if not got:  # two processes drew the same 48-bit random id
                    raise RuntimeError(f"worker lock of {owner} is held by another session")
            except BaseException:
                conn.close()
                engine.dispose()
                raise
            self._worker_lock = (owner, conn)
            self._worker_engine = engine
            return True

    def drop_worker_lock(self) -> None:
        """Close the worker lock's connection (the server releases the lock with it)."""
        with self._worker_mutex:
            self._close_worker_lock()

    def _close_worker_lock(self) -> None:
        if self._worker_lock is not None:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                self._worker_lock[1].close()
            self._worker_lock = None
        if self._worker_engine is not None:
            self._worker_engine.dispose()
            self._worker_engine = None


def worker_lock_key(owner: str) -> int:
    """The advisory-lock key of worker ``owner``'s lock (the same in every replica)."""
    return lock_key("worker", owner)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Autocommit at the driver level: SQLAlchemy's "begin" event issues BEGIN IMMEDIATE.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    # Writers take the lock up front so two of them queue instead of deadlocking on the
    # upgrade from a read lock; readers take a plain (deferred) snapshot and never wait.
    if conn.info.get("genvault_write"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")
