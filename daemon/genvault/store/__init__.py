"""All database access, with :mod:`genvault.store.queries`. Nothing else in genvault issues SQL.

One :class:`Store` wraps an engine (SQLite in WAL mode, or PostgreSQL) and
offers the operations the jobs need, each one a short transaction:

* sync:    :meth:`Store.save_page` upserts a page of generations and their
           assets *and* moves the stream's cursor, in one commit;
* poll:    :meth:`Store.due_for_poll`, :meth:`Store.save_polled`,
           :meth:`Store.poll_error`, :meth:`Store.register_tasks`;
* archive: :meth:`LeaseQueue.acquire` (earliest deadline first; ``FOR UPDATE
           SKIP LOCKED`` on PostgreSQL), :meth:`LeaseQueue.finish`,
           :meth:`LeaseQueue.release`, sidecar bookkeeping; a dead worker's
           leases are freed at once, not after they expire
           (:meth:`Store.void_other_leases` on SQLite, :meth:`Store.hold_worker_lock`
           and :meth:`Store.reap_dead_leases` on PostgreSQL);
* report:  :meth:`Store.summary`, :meth:`Store.at_risk`;
* health:  :meth:`Store.save_provider_health`, :meth:`Store.provider_health`
           (circuit breaker and request budget per account);
* search, activity, metrics, operator commands: mixins in :mod:`genvault.store.queries`.

Batches use executemany (a list of parameter dicts), which measured ~9x faster
than one multi-row VALUES statement on both databases. The few dialect
differences (insert ... on conflict, pragmas) live here alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa

from genvault.logging import get_logger
from genvault.models import utcnow
from genvault.net.throttle import CircuitState, HealthSnapshot
from genvault.records import AssetState
from genvault.store.base import A, C, G, H, lock_key, retry_conflicts
from genvault.store.cursors import CursorState, CursorUpdate, WalkEnding, WalkMark
from genvault.store.leases import AssetLeases, LeasedAsset, LeaseOrder, LeaseQueue, Outcome
from genvault.store.lifecycle import (
    MIGRATIONS,
    SCHEMA_HEAD,
    WORKER_LOCK_TAG,
    Lifecycle,
    worker_lock_key,
)
from genvault.store.queries.activity import ActivityQueries
from genvault.store.queries.metrics import MetricsQueries
from genvault.store.queries.operator import OperatorQueries
from genvault.store.queries.search import SearchQueries
from genvault.store.queries.streams import StreamQueries
from genvault.store.writes import PollItem, SaveResult, WritePath

P = ParamSpec("P")
R = TypeVar("R")
log = get_logger("genvault.store")


# --------------------------------------------------------------------------- value types


@dataclass(frozen=True, slots=True)
class StoredHealth:
    """One ``provider_health`` row: an account's guard state and when it was written."""

    account: str
    provider: str
    health: HealthSnapshot
    updated_at: datetime


# --------------------------------------------------------------------------- the store


class Store(
    Lifecycle,
    WritePath,
    SearchQueries,
    ActivityQueries,
    MetricsQueries,
    OperatorQueries,
    StreamQueries,
):
    """The metadata database: the jobs' write path here, people's queries in the mixins."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        super().__init__(url, echo=echo)
        self.leases = AssetLeases(self)
        """The archive queue: files leased, extended, finished and handed back."""

    # ------------------------------------------------------------------ leases of dead workers
    #
    # A lease names its worker and carries an expiry (``lease_until``), extended while
    # the worker runs. Expiry alone left a killed run's files alone for
    # ``archive.lease_seconds`` (15 minutes), long enough for a file to pass its
    # deadline. So a lease is also tied to something that dies with its worker:
    #
    # * SQLite: one process per database (:mod:`genvault.instance`). The process that
    #   takes the database's lock voids every other worker's lease at start
    #   (:meth:`void_other_leases`): whoever held them is dead.
    # * PostgreSQL: each worker holds a session-level advisory lock on a key derived
    #   from its worker id, on a connection of its own, for the process's life
    #   (:meth:`hold_worker_lock`). The server drops the lock with the session when the
    #   process dies (SIGKILL, OOM kill), or when TCP keepalives give up on a host that
    #   vanished. :meth:`reap_dead_leases` frees the leases of workers whose lock is
    #   gone; every archive pass runs it at its start and every few seconds.
    #
    # Leases of workers without the ``WORKER_LOCK_TAG`` (genvault 0.1.0 replicas during
    # a rolling upgrade) hold no lock: the reaper leaves them alone and they expire as
    # they always did, so an old replica's files are never downloaded twice.

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

    def sidecars_due(
        self, limit: int, accounts: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        """Generations whose sidecar must be (re)written: nothing pending, something changed."""
        pending = (
            sa.select(A.c.id)
            .where(A.c.generation_id == G.c.id, A.c.state == AssetState.PENDING.value)
            .exists()
        )
        q = sa.select(G).where(G.c.sidecar_due.is_(True), ~pending).limit(limit)
        if accounts is not None:
            q = q.where(G.c.account.in_(list(accounts)))
        with self.engine.connect() as conn:
            gens = [dict(r._mapping) for r in conn.execute(q)]
            if not gens:
                return []
            assets = defaultdict(list)
            for r in conn.execute(
                sa.select(A)
                .where(A.c.generation_id.in_([g["id"] for g in gens]))
                .order_by(A.c.generation_id, A.c.position)
            ):
                assets[r.generation_id].append(dict(r._mapping))
        for g in gens:
            g["assets"] = assets.get(g["id"], [])
        return gens

    def sidecar_written(self, generation_id: int, seen_updated_at: datetime) -> None:
        """Clear the flag unless the generation changed again while we wrote."""
        self.sidecars_written([(generation_id, seen_updated_at)])

    @retry_conflicts
    def sidecars_written(self, done: Sequence[tuple[int, datetime]]) -> None:
        """:meth:`sidecar_written` for a batch, in one transaction (executemany)."""
        if not done:
            return
        done = sorted(done)
        with self.tx() as conn:
            self.lock_generations(conn, [gid for gid, _ in done])
            conn.execute(
                G.update()
                .where(G.c.id == sa.bindparam("gid"), G.c.updated_at == sa.bindparam("seen"))
                .values(sidecar_due=False),
                [{"gid": gid, "seen": seen} for gid, seen in done],
            )

    # ------------------------------------------------------------------ provider health

    def save_provider_health(
        self, account: str, provider: str, health: HealthSnapshot, now: datetime | None = None
    ) -> None:
        """Upsert an account's circuit/budget state (the last writer wins: it is a snapshot)."""
        values: dict[str, Any] = {
            "provider": provider,
            "circuit": health.circuit.value,
            "consecutive_failures": health.consecutive_failures,
            "opened_at": health.opened_at,
            "retry_at": health.retry_at,
            "last_error": (health.last_error or None) and health.last_error[:300],
            "budget_interval": float(health.budget_interval),
            "rate_limited_until": health.rate_limited_until,
            "updated_at": now or utcnow(),
        }
        ins = self._insert(H).values(account=account, **values)
        with self.tx() as conn:
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=["account"],
                    set_={k: getattr(ins.excluded, k) for k in values},
                )
            )

    def provider_health(self, account: str | None = None) -> dict[str, StoredHealth]:
        """Stored guard states by account (accounts never written are absent: healthy)."""
        q = sa.select(H)
        if account is not None:
            q = q.where(H.c.account == account)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        out: dict[str, StoredHealth] = {}
        for r in rows:
            try:
                circuit = CircuitState(r.circuit)
            except ValueError:  # written by a newer genvault: assume nothing
                circuit = CircuitState.CLOSED
            out[r.account] = StoredHealth(
                account=r.account,
                provider=r.provider,
                health=HealthSnapshot(
                    circuit=circuit,
                    consecutive_failures=r.consecutive_failures,
                    opened_at=r.opened_at,
                    retry_at=r.retry_at,
                    last_error=r.last_error,
                    budget_interval=float(r.budget_interval),
                    rate_limited_until=r.rate_limited_until,
                ),
                updated_at=r.updated_at,
            )
        return out

    # ------------------------------------------------------------------ reporting

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per account: generation counts by status, asset counts by state, last sync."""
        out: dict[str, dict[str, Any]] = defaultdict(
            lambda: {
                "generations": {},
                "assets": {},
                "last_sync": None,
                "last_error": None,
                "bytes_archived": 0,
                "next_deadline": None,
            }
        )
        with self.engine.connect() as conn:
            for r in conn.execute(
                sa.select(G.c.account, G.c.status, sa.func.count()).group_by(
                    G.c.account, G.c.status
                )
            ):
                out[r[0]]["generations"][r[1]] = r[2]
            for r in conn.execute(
                sa.select(
                    A.c.account,
                    A.c.state,
                    sa.func.count(),
                    sa.func.coalesce(sa.func.sum(A.c.size), 0),
                ).group_by(A.c.account, A.c.state)
            ):
                out[r[0]]["assets"][r[1]] = r[2]
                if r[1] == AssetState.ARCHIVED.value:
                    out[r[0]]["bytes_archived"] = int(r[3])
            for r in conn.execute(
                sa.select(A.c.account, sa.func.min(A.c.expires_at))
                .where(A.c.state == AssetState.PENDING.value)
                .group_by(A.c.account)
            ):
                out[r[0]]["next_deadline"] = r[1]
            for r in conn.execute(
                sa.select(
                    C.c.account, sa.func.max(C.c.last_success_at), sa.func.max(C.c.last_error)
                ).group_by(C.c.account)
            ):
                out[r[0]]["last_sync"] = r[1]
                out[r[0]]["last_error"] = r[2]
        for v in out.values():
            if isinstance(v["next_deadline"], datetime) and v["next_deadline"].tzinfo is None:
                v["next_deadline"] = v["next_deadline"].replace(tzinfo=utcnow().tzinfo)
        return dict(out)

    def at_risk(
        self, within: timedelta, limit: int = 50, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Pending assets whose deadline falls within ``within`` (expired ones included)."""
        now = now or utcnow()
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    A.c.id,
                    A.c.account,
                    A.c.provider,
                    G.c.external_id,
                    A.c.role,
                    A.c.expires_at,
                    A.c.attempts,
                    A.c.last_error,
                )
                .join(G, G.c.id == A.c.generation_id)
                .where(A.c.state == AssetState.PENDING.value, A.c.expires_at <= now + within)
                .order_by(A.c.expires_at)
                .limit(limit)
            ).all()
        return [dict(r._mapping) for r in rows]

    def outstanding_work(self) -> tuple[int, int]:
        """(generations still to be polled, assets still pending): zero and zero is quiet."""
        with self.engine.connect() as conn:
            polling = conn.execute(
                sa.select(sa.func.count()).select_from(G).where(G.c.next_poll_at.is_not(None))
            ).scalar_one()
            pending = conn.execute(
                sa.select(sa.func.count())
                .select_from(A)
                .where(A.c.state == AssetState.PENDING.value)
            ).scalar_one()
        return int(polling), int(pending)

    def count_assets(self, state: AssetState | None = None) -> int:
        q = sa.select(sa.func.count()).select_from(A)
        if state is not None:
            q = q.where(A.c.state == state.value)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    def assets(self, account: str | None = None) -> list[dict[str, Any]]:
        """Every asset row (for tests, export and verify)."""
        q = sa.select(A, G.c.external_id).join(G, G.c.id == A.c.generation_id).order_by(A.c.id)
        if account is not None:
            q = q.where(A.c.account == account)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def generations(self, account: str | None = None) -> list[dict[str, Any]]:
        q = sa.select(G).order_by(G.c.id)
        if account is not None:
            q = q.where(G.c.account == account)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]


def _lease_owners_statement() -> sa.Select[str]:
    """``SELECT DISTINCT lease_owner FROM asset WHERE lease_owner IS NOT NULL``: the
    predicate of ``ix_asset_lease_owner``, so the index alone answers it."""
    stmt: sa.Select[str] = sa.select(A.c.lease_owner).where(A.c.lease_owner.is_not(None)).distinct()
    return stmt


__all__ = [
    "MIGRATIONS",
    "SCHEMA_HEAD",
    "WORKER_LOCK_TAG",
    "A",
    "C",
    "CursorState",
    "CursorUpdate",
    "G",
    "H",
    "LeaseOrder",
    "LeaseQueue",
    "LeasedAsset",
    "Outcome",
    "PollItem",
    "SaveResult",
    "Store",
    "StoredHealth",
    "WalkEnding",
    "WalkMark",
    "worker_lock_key",
]
