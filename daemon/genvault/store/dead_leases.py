"""Leases of dead workers: freed at once, not after they expire.

A lease names its worker and carries an expiry (``lease_until``), extended while
the worker runs. Expiry alone left a killed run's files alone for
``archive.lease_seconds`` (15 minutes), long enough for a file to pass its
deadline. So a lease is also tied to something that dies with its worker:

* SQLite: one process per database (:mod:`genvault.instance`). The process that
  takes the database's lock voids every other worker's lease at start
  (:meth:`DeadLeases.void_other_leases`): whoever held them is dead.
* PostgreSQL: each worker holds a session-level advisory lock on a key derived
  from its worker id, on a connection of its own, for the process's life
  (:meth:`~genvault.store.lifecycle.Lifecycle.hold_worker_lock`). The server drops
  the lock with the session when the process dies (SIGKILL, OOM kill), or when TCP
  keepalives give up on a host that vanished. :meth:`DeadLeases.reap_dead_leases`
  frees the leases of workers whose lock is gone; every archive pass runs it at its
  start and every few seconds.

Leases of workers without the ``WORKER_LOCK_TAG`` (genvault 0.1.0 replicas during
a rolling upgrade) hold no lock: the reaper leaves them alone and they expire as
they always did, so an old replica's files are never downloaded twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import timedelta

import sqlalchemy as sa

from genvault.logs import get_logger
from genvault.models import utcnow
from genvault.records import AssetState
from genvault.store.base import A, StoreBase, lock_key, retry_conflicts
from genvault.store.lifecycle import WORKER_LOCK_TAG, worker_lock_key

log = get_logger("genvault.store")


class DeadLeases(StoreBase):
    """Which lease owners are alive, and freeing the leases of those that are not."""

    def void_other_leases(self, owner: str) -> int:
        """SQLite, at start under the database's process lock: clear every lease that
        ``owner`` does not hold (one UPDATE over ``ix_asset_lease_owner``).

        Only one process may use a SQLite database, and this one holds its lock, so any
        other worker's lease belongs to a process that is gone (killed mid-pass). Never
        on PostgreSQL, where other workers' leases belong to live replicas.
        """
        if not self.is_sqlite:
            raise RuntimeError("void_other_leases is for SQLite; PostgreSQL reaps dead leases")
        with self.tx() as conn:
            res = conn.execute(
                A.update()
                .where(A.c.lease_owner.is_not(None), A.c.lease_owner != owner)
                .values(lease_owner=None, lease_until=None)
            )
        return int(res.rowcount)

    def live_workers(self, owners: Iterable[str]) -> set[str]:
        """Which of ``owners`` hold their worker lock right now: one read of ``pg_locks``.

        A bigint advisory key shows up split into ``classid`` (high 32 bits) and
        ``objid`` (low 32 bits) with ``objsubid = 1``. On SQLite, every owner (the
        process lock, checked by the caller, says whether anyone is alive).
        """
        wanted = set(owners)
        if self.is_sqlite or not wanted:
            return wanted
        by_key: dict[tuple[int, int], str] = {}
        for o in wanted:
            k = worker_lock_key(o) & 0xFFFFFFFFFFFFFFFF
            by_key[(k >> 32, k & 0xFFFFFFFF)] = o
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT classid::text::bigint, objid::text::bigint FROM pg_locks"
                    " WHERE locktype = 'advisory' AND objsubid = 1 AND granted"
                    " AND database = (SELECT oid FROM pg_database"
                    " WHERE datname = current_database())"
                    " AND objid::text::bigint = ANY(:lo)"
                ),
                {"lo": sorted({lo for _, lo in by_key})},
            ).all()
        return {by_key[(hi, lo)] for hi, lo in rows if (hi, lo) in by_key}

    def lease_owners(self) -> list[str]:
        """Workers holding at least one lease (a scan of the partial ``ix_asset_lease_owner``,
        which holds only leased rows: a few hundred in a table of millions)."""
        with self.engine.connect() as conn:
            return list(conn.execute(_lease_owners_statement()).scalars())

    def explain_lease_owners(self) -> list[str]:
        """PostgreSQL's ``EXPLAIN (ANALYZE, BUFFERS)`` of the reaper's owner query: it must
        read the partial index on ``lease_owner``, never the table."""
        if self.is_sqlite:
            raise NotImplementedError("explain_lease_owners is for PostgreSQL")
        sql = _lease_owners_statement().compile(dialect=self.engine.dialect)
        with self.engine.connect() as conn:
            return [row[0] for row in conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")]

    def dead_lease_owners(self, *, process_alive: bool = True) -> list[str]:
        """Lease owners whose worker is gone, so their files are as good as free.

        PostgreSQL: tagged owners whose worker lock nobody holds. SQLite: every owner
        when no process holds the database's lock (``process_alive`` False, asked by
        the caller with :func:`genvault.instance.lock_held`), else none.
        """
        owners = self.lease_owners()
        if self.is_sqlite:
            return [] if process_alive else sorted(owners)
        tied = [o for o in owners if o.endswith(WORKER_LOCK_TAG)]
        return sorted(set(tied) - self.live_workers(tied)) if tied else []

    def reap_dead_leases(self) -> int:
        """PostgreSQL: free the leases of workers whose lock is gone; returns how many.

        Three short statements: the distinct lease owners (index only), their locks in
        one read of ``pg_locks``, then one UPDATE for the dead ones, under a
        transaction-level try-lock so that replicas reaping at the same moment do not
        queue on the same rows (the one that finds it taken skips: the other reaps).
        Owners without ``WORKER_LOCK_TAG`` (an older genvault) are left to expire.
        Always 0 on SQLite, where :meth:`void_other_leases` runs at start instead.
        """
        if self.is_sqlite:
            return 0
        dead = self.dead_lease_owners()
        if not dead:
            return 0
        with self.tx() as conn:
            if not conn.execute(
                sa.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": lock_key("reap")}
            ).scalar():
                return 0
            res = conn.execute(
                A.update()
                .where(self._one_of(A.c.lease_owner, dead))
                .values(lease_owner=None, lease_until=None)
            )
        freed = int(res.rowcount)
        if freed:
            log.info("lease.reaped", assets=freed, workers=dead)
        return freed

    @retry_conflicts
    def reclaim_leases(self, owner: str, ids: Sequence[int], lease_seconds: float) -> int:
        """After ``owner`` took its worker lock again: hold exactly ``ids`` (the files it
        is still working on) and release any other lease it has; returns how many of
        ``ids`` it holds now.

        While the lock was gone a reaper may have freed them: a file still pending and
        free is taken back; one another worker has leased (or finished) since stays
        theirs, and this worker's outcome for it will be dropped by
        :meth:`LeaseQueue.finish`. At the start of a pass ``ids`` is empty: leases left by
        an earlier pass that died with the connection are given back.
        """
        until = utcnow() + timedelta(seconds=lease_seconds)
        with self.tx() as conn:
            mine = A.c.lease_owner == owner
            conn.execute(
                A.update()
                .where(mine, A.c.id.not_in(list(ids)) if ids else sa.true())
                .values(lease_owner=None, lease_until=None)
            )
            if not ids:
                return 0
            res = conn.execute(
                A.update()
                .where(
                    A.c.id.in_(list(ids)),
                    A.c.state == AssetState.PENDING.value,
                    sa.or_(mine, A.c.lease_owner.is_(None)),
                )
                .values(lease_owner=owner, lease_until=until)
            )
        return int(res.rowcount)

    def held_by_live_workers(self, *, process_alive: bool = True) -> dict[str, int]:
        """Pending files per account that a live worker is archiving right now (``status``).

        A lease counts while unexpired and, on PostgreSQL, while its worker holds its
        lock (an older genvault's lease, which has no lock, counts until it expires).
        On SQLite the caller says whether a process holds the database's lock
        (``process_alive``): if none does, every lease there is a dead run's.
        """
        if self.is_sqlite and not process_alive:
            return {}
        now = utcnow()
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(A.c.account, A.c.lease_owner, sa.func.count())
                .where(
                    A.c.lease_owner.is_not(None),
                    A.c.state == AssetState.PENDING.value,
                    A.c.lease_until >= now,
                )
                .group_by(A.c.account, A.c.lease_owner)
            ).all()
        tied = {r[1] for r in rows if r[1].endswith(WORKER_LOCK_TAG)}
        live = self.live_workers(tied) if tied else set()
        out: dict[str, int] = defaultdict(int)
        for account, owner, n in rows:
            if owner in live or not owner.endswith(WORKER_LOCK_TAG) or self.is_sqlite:
                out[account] += int(n)
        return dict(out)

    def waiting_files(
        self, accounts: Sequence[str], *, backing_off: bool = False
    ) -> dict[str, int]:
        """Pending files per account of ``accounts`` that no live worker holds: what a
        pass left undone (backing off after a failure, or come too late for it).

        ``run --once`` ends with this: its archive pass leases every due file until
        none is left, so a pending file nobody holds is one the run did not save, and
        the run is not complete (exit 3). Files a live peer replica is archiving are
        that replica's to report. ``backing_off``: only the files whose next attempt
        is still ahead (an earlier attempt failed), which the daemon's archive pass
        counts: a file the sync saved a moment after the pass ended is not its failure.

        One statement, after the dead owners are known: a lease counts as held unless
        it expired or its owner is known dead, so a peer that finishes or takes a file
        while this runs cannot make it look unheld. (Counting the pending files and
        then the held ones apart counted a file a peer archived in between as pending
        but no longer held: ``bench scaleout`` showed replicas exiting 3 for it.)
        """
        if not accounts:
            return {}
        now = utcnow()
        unheld = sa.or_(A.c.lease_owner.is_(None), A.c.lease_until < now)
        if backing_off:
            unheld = sa.and_(unheld, A.c.next_attempt_at > now)
        elif dead := self.dead_lease_owners():
            unheld = sa.or_(unheld, A.c.lease_owner.in_(dead))
        q = (
            sa.select(A.c.account, sa.func.count())
            .where(
                A.c.state == AssetState.PENDING.value,
                A.c.account.in_(list(accounts)),
                unheld,
            )
            .group_by(A.c.account)
        )
        with self.engine.connect() as conn:
            return {account: int(n) for account, n in conn.execute(q).all() if n}


def _lease_owners_statement() -> sa.Select[str]:
    """``SELECT DISTINCT lease_owner FROM asset WHERE lease_owner IS NOT NULL``: the
    predicate of ``ix_asset_lease_owner``, so the index alone answers it."""
    stmt: sa.Select[str] = sa.select(A.c.lease_owner).where(A.c.lease_owner.is_not(None)).distinct()
    return stmt
