"""The lease queue: how archive workers take pending files, hold them, and hand them back.

A file is *leased* while a worker archives it: ``asset.lease_owner`` names the
worker and ``asset.lease_until`` says until when (extended while the worker runs),
so replicas and threads never download the same file at once, and a file whose
worker stalls goes back to the queue. :class:`LeaseQueue` is what the archive job
asks of the queue; :class:`AssetLeases` implements it over the ``asset`` table,
taking files earliest deadline first (``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
so replicas lease side by side without waiting on each other). The leases of a
worker that died are freed sooner than their expiry by
:mod:`genvault.store.dead_leases`.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from genvault.models import utcnow
from genvault.records import AssetState
from genvault.store.base import A, G, StoreBase, retry_conflicts


@dataclass(frozen=True, slots=True)
class LeasedAsset:
    """Everything the archive job needs for one file, read at lease time."""

    id: int
    generation_id: int
    provider: str
    account: str
    external_id: str
    generation_created_at: datetime
    source_url: str
    role: str
    kind: str
    position: int
    expected_size: int | None
    expires_at: datetime
    attempts: int
    url_refreshed: bool


class LeaseOrder(enum.Enum):
    """Which pending files :meth:`LeaseQueue.acquire` hands out first.

    ``DEADLINE`` is genvault's order and the only one for production. ``FIFO`` exists
    so a benchmark can count, on identical inputs, what the deadline order saves: it
    is the naive archiver's order (oldest generation first, deadlines ignored, expired
    files tried in line like any other). It is deliberately not a configuration knob.
    """

    DEADLINE = "deadline"
    """Savable files earliest-deadline-first, then expired ones (a last chance)."""
    FIFO = "fifo"
    """By generation creation time, oldest first; for comparison only."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one archive attempt, applied by :meth:`LeaseQueue.finish`."""

    asset_id: int
    state: AssetState
    """ARCHIVED, PENDING (retry later), FAILED or LOST."""
    error: str | None = None
    retry_at: datetime | None = None
    size: int | None = None
    sha256: str | None = None
    content_type: str | None = None
    storage_key: str | None = None
    new_url: str | None = None
    """A fresh URL read from the provider after a 403/404/410."""
    new_expires_at: datetime | None = None
    """The deadline that comes with the fresh URL (a re-signed URL lives longer)."""
    new_expires_source: str | None = None
    """Where that deadline comes from (:class:`genvault.records.DeadlineSource`)."""


class LeaseQueue(Protocol):
    """The archive queue as its workers use it: acquire files, extend, finish or hand back.

    Every call names the worker (``owner``): a lease that expired and moved to
    another worker is that worker's now, and this one's writes to it are dropped.
    """

    def acquire(
        self,
        owner: str,
        *,
        limit: int,
        lease_seconds: float,
        now: datetime | None = None,
        accounts: Iterable[str] | None = None,
        order: LeaseOrder = LeaseOrder.DEADLINE,
    ) -> list[LeasedAsset]:
        """Lease up to ``limit`` pending files for ``lease_seconds``, in ``order``."""
        ...

    def extend(self, owner: str, ids: Sequence[int], lease_seconds: float) -> None:
        """Keep holding the files ``ids`` for another ``lease_seconds``."""
        ...

    def finish(self, owner: str, outcomes: Sequence[Outcome]) -> int:
        """Record archive attempts (each counts one attempt); how many still held our lease."""
        ...

    def defer(self, owner: str, outcomes: Sequence[Outcome]) -> int:
        """Hand files back untried, their attempts unchanged; how many still held our lease."""
        ...

    def release(self, owner: str) -> int:
        """Give back every lease of ``owner`` (shutdown); returns how many."""
        ...


class AssetLeases(LeaseQueue):
    """:class:`LeaseQueue` over the ``asset`` table (``Store.leases``), and its EXPLAIN."""

    def __init__(self, db: StoreBase) -> None:
        self._db = db

    @retry_conflicts
    def acquire(
        self,
        owner: str,
        *,
        limit: int,
        lease_seconds: float,
        now: datetime | None = None,
        accounts: Iterable[str] | None = None,
        order: LeaseOrder = LeaseOrder.DEADLINE,
    ) -> list[LeasedAsset]:
        """Take up to ``limit`` pending assets: savable ones earliest-deadline-first,
        then already-expired ones (a last chance; most recently expired first).

        ``order=LeaseOrder.FIFO`` (benchmarks only) takes them by generation creation
        time instead, oldest first, whatever their deadlines.
        """
        now = now or utcnow()
        until = now + timedelta(seconds=lease_seconds)
        account_list = list(accounts) if accounts is not None else None
        leased: list[int] = []
        live_ids: set[int] = set()
        # DEADLINE: a pass over savable files, then one over expired ones; FIFO: one pass.
        passes: tuple[bool | None, ...] = (True, False) if order is LeaseOrder.DEADLINE else (None,)
        with self._db.tx() as conn:
            for live in passes:
                want = limit - len(leased)
                if want <= 0:
                    break
                stmt = _lease_template(live, account_list is not None)
                params = {
                    "owner": owner,
                    "until": until,
                    "now": now,
                    "read_due": now + READ_DUE_HOLD,
                    "urgent": now + READ_HOLD_UNTIL_DEADLINE,
                    "limit": want,
                }
                if account_list is not None:
                    params["accounts"] = account_list
                ids = list(conn.execute(stmt, params).scalars())
                leased.extend(ids)
                if live:
                    live_ids.update(ids)
            if not leased:
                return []
            rows = conn.execute(
                sa.select(A, G.c.external_id, G.c.created_at.label("gen_created"))
                .join(G, G.c.id == A.c.generation_id)
                .where(A.c.id.in_(leased))
            ).all()
        out = [
            LeasedAsset(
                id=r.id,
                generation_id=r.generation_id,
                provider=r.provider,
                account=r.account,
                external_id=r.external_id,
                generation_created_at=r.gen_created,
                source_url=r.source_url,
                role=r.role,
                kind=r.kind,
                position=r.position,
                expected_size=r.expected_size,
                expires_at=r.expires_at,
                attempts=r.attempts,
                url_refreshed=r.url_refreshed,
            )
            for r in rows
        ]

        # UPDATE ... RETURNING gives rows in no particular order: restore the lease order.
        if order is LeaseOrder.FIFO:
            created = {r.id: r.created_at for r in rows}
            out.sort(key=lambda a: (created[a.id], a.id))
            return out

        def deadline_first(a: LeasedAsset) -> tuple[int, float, float, int]:
            if a.id in live_ids:
                return (0, a.expires_at.timestamp(), a.generation_created_at.timestamp(), a.id)
            return (1, -a.expires_at.timestamp(), 0.0, a.id)

        out.sort(key=deadline_first)
        return out

    def explain(self, limit: int = 64, now: datetime | None = None) -> list[str]:
        """PostgreSQL's ``EXPLAIN ANALYZE`` of the lease statement, as run per batch.

        The statement really runs (that is what ANALYZE means) inside a transaction
        that is rolled back, so nothing is leased. It shows which index serves the
        earliest-deadline-first scan and what one batch costs on this database.
        """
        if self._db.is_sqlite:
            raise NotImplementedError("explaining the lease statement is for PostgreSQL")
        now = now or utcnow()
        stmt = _lease_statement("explain", now, now, limit, None, live=True)
        sql = stmt.compile(dialect=self._db.engine.dialect, compile_kwargs={"literal_binds": True})
        with self._db.engine.connect() as conn, conn.begin() as tx:
            plan = [row[0] for row in conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")]
            tx.rollback()
        return plan

    @retry_conflicts
    def extend(self, owner: str, ids: Sequence[int], lease_seconds: float) -> None:
        if not ids:
            return
        with self._db.tx() as conn:
            conn.execute(
                A.update()
                .where(A.c.id.in_(list(ids)), A.c.lease_owner == owner)
                .values(lease_until=utcnow() + timedelta(seconds=lease_seconds))
            )

    @retry_conflicts
    def finish(self, owner: str, outcomes: Sequence[Outcome]) -> int:
        """Apply archive outcomes in one transaction; returns how many still held our lease.

        An outcome for a lease that expired and moved to another worker is
        dropped: that worker will write the same key and record it.
        """
        if not outcomes:
            return 0
        now = utcnow()
        applied = 0
        archived_rows: list[dict[str, Any]] = []
        retry_rows: list[dict[str, Any]] = []
        with self._db.tx() as conn:
            for o in outcomes:
                if o.new_url is not None or o.new_expires_at is not None:
                    applied += _finish_one(conn, owner, o, now)  # a refreshed URL: rare
                elif o.state is AssetState.ARCHIVED:
                    archived_rows.append(
                        {
                            "b_id": o.asset_id,
                            "b_owner": owner,
                            "b_now": now,
                            "b_size": o.size,
                            "b_sha256": o.sha256,
                            "b_ctype": o.content_type,
                            "b_key": o.storage_key,
                        }
                    )
                else:
                    retry_rows.append(
                        {
                            "b_id": o.asset_id,
                            "b_owner": owner,
                            "b_now": now,
                            "b_state": o.state.value,
                            "b_error": (o.error or "")[:2000],
                            "b_retry": o.retry_at,
                        }
                    )
            # One executemany per kind, its statement compiled once per process.
            for stmt, rows in ((_FINISH_ARCHIVED, archived_rows), (_FINISH_RETRY, retry_rows)):
                if rows:
                    applied += conn.execute(stmt, rows).rowcount
            archived = [o.asset_id for o in outcomes if o.state is AssetState.ARCHIVED]
            if archived:
                gen_ids = sorted(
                    set(
                        conn.execute(
                            sa.select(A.c.generation_id).where(A.c.id.in_(archived))
                        ).scalars()
                    )
                )
                self._db.lock_generations(conn, gen_ids)
                conn.execute(G.update().where(G.c.id.in_(gen_ids)).values(sidecar_due=True))
        return applied

    @retry_conflicts
    def defer(self, owner: str, outcomes: Sequence[Outcome]) -> int:
        """Hand leased files back untried through no fault of theirs: still pending, due
        at each outcome's ``retry_at``, its error kept, ``attempts`` unchanged; returns
        how many still held our lease.

        For failures that are not the file's (the archive storage is down, see
        :mod:`genvault.storage.guard`): ``archive.max_attempts`` exists to give up on
        files that keep failing, and must not be used up by an outage.
        """
        if not outcomes:
            return 0
        now = utcnow()
        rows = [
            {
                "b_id": o.asset_id,
                "b_owner": owner,
                "b_now": now,
                "b_error": (o.error or "")[:2000],
                "b_retry": o.retry_at,
            }
            for o in outcomes
        ]
        with self._db.tx() as conn:
            return int(conn.execute(_DEFER, rows).rowcount)

    def release(self, owner: str) -> int:
        """Give back every lease of ``owner`` (shutdown): another run takes them at once."""
        with self._db.tx() as conn:
            res = conn.execute(
                A.update()
                .where(A.c.lease_owner == owner, A.c.state == AssetState.PENDING.value)
                .values(lease_owner=None, lease_until=None)
            )
        return int(res.rowcount)


def _lease_statement(
    owner: str,
    until: datetime,
    now: datetime,
    limit: int,
    accounts: list[str] | None,
    live: bool | None,
) -> sa.Update:
    """The lease statement with its values in it (``explain`` renders them literally)."""
    return _lease_sql(live, owner, until, now, limit, accounts, *_read_hold(now))


@functools.cache
def _lease_template(live: bool | None, by_account: bool) -> sa.Update:
    """The lease statement of one shape, built once, its values bound at execution
    (``owner``, ``until``, ``now``, ``limit``, ``accounts``): building it per batch was
    a visible share of the archive pass's interpreter time (bench/PROFILE.md §3)."""
    return _lease_sql(
        live,
        sa.bindparam("owner", type_=A.c.lease_owner.type),
        sa.bindparam("until", type_=A.c.lease_until.type),
        sa.bindparam("now", type_=A.c.lease_until.type),
        sa.bindparam("limit", type_=sa.Integer),
        sa.bindparam("accounts", expanding=True) if by_account else None,
        sa.bindparam("read_due", type_=A.c.lease_until.type),
        sa.bindparam("urgent", type_=A.c.lease_until.type),
    )


def _lease_sql(
    live: bool | None,
    owner: Any,
    until: Any,
    now: Any,
    limit: Any,
    accounts: Any,
    read_due: Any,
    urgent: Any,
) -> sa.Update:
    """``UPDATE asset SET lease… WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING id``.

    ``live``: True takes savable files earliest deadline first (served by the
    partial index ``ix_asset_lease``), False the already-expired ones, most
    recently expired first, None the FIFO order of the deadlines benchmark.
    SKIP LOCKED lets replicas lease side by side without waiting on each other's
    rows and without ever taking the same row twice.
    """
    q = sa.select(A.c.id).where(
        A.c.state == AssetState.PENDING.value,
        sa.or_(A.c.lease_until.is_(None), A.c.lease_until < now),
        sa.or_(A.c.next_attempt_at.is_(None), A.c.next_attempt_at <= now),
        _not_awaiting_read(read_due, urgent),
    )
    if accounts is not None:
        q = q.where(A.c.account.in_(accounts))
    if live is None:
        q = q.order_by(A.c.created_at, A.c.id)
    elif live:
        q = q.where(A.c.expires_at >= now).order_by(A.c.expires_at, A.c.created_at)
    else:
        q = q.where(A.c.expires_at < now).order_by(A.c.expires_at.desc())
    q = q.limit(limit).with_for_update(skip_locked=True)
    stmt: sa.Update = (
        A.update()
        .where(A.c.id.in_(q.scalar_subquery()))
        .values(lease_owner=owner, lease_until=until)
        .returning(A.c.id)
    )
    return stmt


READ_DUE_HOLD = timedelta(minutes=5)
"""A file waits while a read of its generation is due within this long (see below)."""
READ_HOLD_UNTIL_DEADLINE = timedelta(hours=1)
"""...but never when its own deadline is this close: a late read must not cost it."""


def _read_hold(now: datetime) -> tuple[datetime, datetime]:
    """``read_due`` and ``urgent`` of :func:`_not_awaiting_read` at ``now`` (computed here:
    SQLite keeps datetimes as text, so no date arithmetic in the statement)."""
    return now + READ_DUE_HOLD, now + READ_HOLD_UNTIL_DEADLINE


def _not_awaiting_read(read_due: Any, urgent: Any) -> sa.ColumnElement[bool]:
    """The file's generation has no read due soon, or the file's deadline is near.

    A listing item that needs its detail read (a GeminiGen video under
    ``fetch_detail = "auto"``) is saved with the listing's files pending and a poll
    due at once; the detail read then corrects their roles and kinds while they are
    pending (a video's last frame, which the listing calls its result). Leased before
    that read, such a file was stored under the listing's role and key, and after a
    kill between the write and its record, stored again under the corrected key: a
    second copy. ``run --once`` polls before it archives, but the daemon's sync, poll
    and archive jobs run side by side, and replicas archive while a peer syncs. So a
    file waits while a read of its generation is due within :data:`READ_DUE_HOLD` (a
    read that keeps failing backs off past it, and the file is taken as listed), and
    never within :data:`READ_HOLD_UNTIL_DEADLINE` of its deadline.
    """
    due = sa.exists().where(
        G.c.id == A.c.generation_id,
        G.c.next_poll_at.is_not(None),
        G.c.next_poll_at <= read_due,
    )
    return sa.or_(~due, A.c.expires_at <= urgent)


def _bind(name: str, column: sa.Column[Any]) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=column.type)


_MINE = sa.and_(A.c.id == sa.bindparam("b_id"), A.c.lease_owner == sa.bindparam("b_owner"))
"""The row of one outcome, if its lease is still ours."""
_FINISH_ARCHIVED = (
    A.update()
    .where(_MINE)
    .values(
        state=AssetState.ARCHIVED.value,
        lease_owner=None,
        lease_until=None,
        updated_at=_bind("b_now", A.c.updated_at),
        size=_bind("b_size", A.c.size),
        sha256=_bind("b_sha256", A.c.sha256),
        content_type=_bind("b_ctype", A.c.content_type),
        storage_key=_bind("b_key", A.c.storage_key),
        archived_at=_bind("b_now", A.c.archived_at),
        last_error=None,
        next_attempt_at=None,
    )
)
"""``finish`` of archived files: one executemany, compiled once."""
_FINISH_RETRY = (
    A.update()
    .where(_MINE)
    .values(
        state=_bind("b_state", A.c.state),
        lease_owner=None,
        lease_until=None,
        updated_at=_bind("b_now", A.c.updated_at),
        last_error=_bind("b_error", A.c.last_error),
        next_attempt_at=_bind("b_retry", A.c.next_attempt_at),
        attempts=A.c.attempts + 1,
    )
)
"""``finish`` of every other outcome (retry, failed, lost): one attempt more."""
_DEFER = (
    A.update()
    .where(_MINE, A.c.state == AssetState.PENDING.value)
    .values(
        lease_owner=None,
        lease_until=None,
        next_attempt_at=_bind("b_retry", A.c.next_attempt_at),
        last_error=_bind("b_error", A.c.last_error),
        updated_at=_bind("b_now", A.c.updated_at),
    )
)
"""``defer``: back to the queue, attempts unchanged."""


def _finish_one(conn: Connection, owner: str, o: Outcome, now: datetime) -> int:
    """``finish`` of one outcome that also brings a refreshed URL or deadline."""
    values: dict[str, Any] = {
        "state": o.state.value,
        "lease_owner": None,
        "lease_until": None,
        "updated_at": now,
    }
    if o.state is AssetState.ARCHIVED:
        values.update(
            size=o.size,
            sha256=o.sha256,
            content_type=o.content_type,
            storage_key=o.storage_key,
            archived_at=now,
            last_error=None,
            next_attempt_at=None,
        )
    else:
        values.update(
            last_error=(o.error or "")[:2000],
            next_attempt_at=o.retry_at,
            attempts=A.c.attempts + 1,
        )
    if o.new_url is not None:
        values.update(source_url=o.new_url, url_refreshed=True, attempts=A.c.attempts)
    if o.new_expires_at is not None:
        values.update(expires_at=o.new_expires_at, expires_source=o.new_expires_source)
    res = conn.execute(
        A.update().where(A.c.id == o.asset_id, A.c.lease_owner == owner).values(**values)
    )
    return int(res.rowcount)
