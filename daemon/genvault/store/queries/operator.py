"""Operator commands' queries: ``verify``, ``export``, ``retry``, ``backfill`` and the dry run.

Everything here reads in short transactions and, for whole-table walks (verify,
export), pages by keyset (``id > last ORDER BY id LIMIT n``): an archive of a
million files is never loaded at once, and no read transaction stays open while
the caller hashes objects or writes output. The writers, :meth:`requeue_assets`
and :meth:`requeue_damaged`, are single transactions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from genvault.models import utcnow
from genvault.records import AssetState
from genvault.store.base import A, G, StoreBase, attach_files, retry_conflicts

_PENDING = AssetState.PENDING.value


@dataclass(frozen=True, slots=True)
class ArchivedFile:
    """What ``verify`` needs of one archived asset: where it is and what it must be."""

    id: int
    account: str
    external_id: str
    role: str
    storage_key: str | None
    size: int | None
    sha256: str | None


@dataclass(frozen=True, slots=True)
class PlannedFile:
    """One pending file as the next archive pass would take it (dry run, backfill)."""

    id: int
    account: str
    provider: str
    external_id: str
    role: str
    kind: str
    expected_size: int | None
    expires_at: datetime
    attempts: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class ArchivePlan:
    """The head of the archive queue and what the whole queue adds up to."""

    files: list[PlannedFile]
    """Leasable now, in lease order (savable earliest deadline first, then expired), capped."""
    leasable: int
    """How many a pass would take now (``files`` may show fewer)."""
    known_bytes: int
    """Sum of the announced sizes of the leasable files that announce one."""
    unknown_size: int
    """Leasable files whose size is only known once downloaded."""
    backoff: int
    """Pending files waiting for a retry time that has not come yet."""
    leased: int
    """Pending files another worker holds right now."""
    roles_to_queue: int = 0
    """Skipped files of roles the config now archives: the next pass queues them first."""


@dataclass(frozen=True, slots=True)
class RequeueResult:
    """What :meth:`OperatorQueries.requeue_assets` changed, and what it left alone."""

    made_due: int = 0
    """Pending files in backoff that are now due."""
    failed_requeued: int = 0
    lost_requeued: int = 0
    failed_left: int = 0
    """Failed files not requeued (``--failed`` not given)."""
    lost_left: int = 0
    """Lost files not requeued (``--lost`` not given)."""


EXPORT_GENERATION_FIELDS = (
    "provider",
    "account",
    "external_id",
    "status",
    "provider_status",
    "kind",
    "model",
    "prompt",
    "error",
    "source",
    "created_at",
    "completed_at",
    "expires_at",
    "expires_source",
    "first_seen_at",
    "updated_at",
)
"""A generation's normalized fields in ``genvault export``, in column order."""
_EXPORT_GENERATION_COLUMNS = ("id", *EXPORT_GENERATION_FIELDS)
_EXPORT_ASSET_COLUMNS = (
    "generation_id",
    "position",
    "role",
    "kind",
    "state",
    "source_url",
    "storage_key",
    "size",
    "expected_size",
    "sha256",
    "content_type",
    "expires_at",
    "expires_source",
    "archived_at",
    "attempts",
    "last_error",
)


class OperatorQueries(StoreBase):
    """Reads and the one requeue behind the operator commands."""

    # ------------------------------------------------------------------ verify

    def archived_totals(self) -> tuple[int, int]:
        """(archived files, their bytes): the denominator of ``verify``'s progress."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(A.c.size), 0)).where(
                    A.c.state == AssetState.ARCHIVED.value
                )
            ).one()
        return int(row[0]), int(row[1])

    def _archived_select(self) -> sa.Select[Any]:
        return (
            sa.select(
                A.c.id,
                A.c.account,
                G.c.external_id,
                A.c.role,
                A.c.storage_key,
                A.c.size,
                A.c.sha256,
            )
            .join(G, G.c.id == A.c.generation_id)
            .where(A.c.state == AssetState.ARCHIVED.value)
        )

    def iter_archived(self, batch_size: int = 1000) -> Iterator[list[ArchivedFile]]:
        """Every archived asset, a batch at a time, by keyset on the id."""
        last = 0
        while True:
            q = self._archived_select().where(A.c.id > last).order_by(A.c.id).limit(batch_size)
            with self.engine.connect() as conn:
                batch = [ArchivedFile(*r) for r in conn.execute(q)]
            if not batch:
                return
            yield batch
            last = batch[-1].id

    def sample_archived(self, n: int) -> list[ArchivedFile]:
        """``n`` archived assets drawn at random by the database.

        ``ORDER BY random() LIMIT n`` on both SQLite and PostgreSQL: one scan with a
        top-n heap, so only ``n`` rows ever leave the server.
        """
        q = self._archived_select().order_by(sa.func.random()).limit(n)
        with self.engine.connect() as conn:
            return [ArchivedFile(*r) for r in conn.execute(q)]

    # ------------------------------------------------------------------ export

    def export_batches(
        self,
        *,
        account: str | None = None,
        since: datetime | None = None,
        batch_size: int = 500,
        include_raw: bool = False,
    ) -> Iterator[list[dict[str, Any]]]:
        """Generations with their files (``"assets"``, by position), ``batch_size`` at a time.

        Keyset pagination on the generation id, each batch in its own short read:
        memory stays at one batch whatever the table size, and a slow consumer
        (a pipe, a network disk) holds no transaction open. ``since`` bounds the
        creation time; ``raw`` (the provider payload) is read only when asked for.
        """
        cols = [G.c[name] for name in _EXPORT_GENERATION_COLUMNS]
        if include_raw:
            cols.append(G.c.raw)
        last = 0
        while True:
            q = sa.select(*cols).where(G.c.id > last)
            if account is not None:
                q = q.where(G.c.account == account)
            if since is not None:
                q = q.where(G.c.created_at >= since)
            q = q.order_by(G.c.id).limit(batch_size)
            with self.engine.connect() as conn:
                gens = [dict(r._mapping) for r in conn.execute(q)]
                if not gens:
                    return
                attach_files(conn, gens, (A.c[name] for name in _EXPORT_ASSET_COLUMNS))
            yield gens
            last = gens[-1]["id"]

    # ------------------------------------------------------------------ retry

    @retry_conflicts
    def requeue_assets(
        self,
        account: str,
        *,
        failed: bool = False,
        lost: bool = False,
        now: datetime | None = None,
    ) -> RequeueResult:
        """Make an account's files due again, in one transaction (``genvault retry``).

        * pending files waiting out a backoff become due now; a lease is left alone
          (its holder is downloading the file right now);
        * ``failed``: failed files go back to pending with their attempts reset; the
          last error stays until the next attempt replaces it;
        * ``lost``: lost files go back to pending too, with their one URL refresh
          given back: the next pass asks the provider for a fresh URL once more. Their
          deadline has passed, so they are tried after every savable file and become
          lost again if the provider no longer serves them.
        """
        now = now or utcnow()
        with self.tx() as conn:
            made_due = conn.execute(
                A.update()
                .where(
                    A.c.account == account,
                    A.c.state == _PENDING,
                    A.c.next_attempt_at > now,
                )
                .values(next_attempt_at=now, updated_at=now)
            ).rowcount
            requeue = {
                "state": _PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "lease_owner": None,
                "lease_until": None,
                "updated_at": now,
            }
            counts: dict[str, int] = {}
            for state, wanted in ((AssetState.FAILED, failed), (AssetState.LOST, lost)):
                where = (A.c.account == account, A.c.state == state.value)
                if wanted:
                    values = dict(requeue)
                    if state is AssetState.LOST:
                        values["url_refreshed"] = False
                    counts[state.value] = conn.execute(
                        A.update().where(*where).values(**values)
                    ).rowcount
                else:
                    counts[state.value] = conn.execute(
                        sa.select(sa.func.count()).select_from(A).where(*where)
                    ).scalar_one()
        return RequeueResult(
            made_due=int(made_due or 0),
            failed_requeued=counts["failed"] if failed else 0,
            lost_requeued=counts["lost"] if lost else 0,
            failed_left=0 if failed else counts["failed"],
            lost_left=0 if lost else counts["lost"],
        )

    # ------------------------------------------------------------------ dry run, backfill

    def known_fingerprints(
        self, provider: str, account: str, external_ids: Sequence[str]
    ) -> dict[str, str]:
        """Stored listing fingerprints of these generations (absent: never seen)."""
        if not external_ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(G.c.external_id, G.c.fingerprint).where(
                    G.c.provider == provider,
                    G.c.account == account,
                    G.c.external_id.in_(list(dict.fromkeys(external_ids))),
                )
            ).all()
        return {r.external_id: r.fingerprint for r in rows}

    def count_due_for_poll(self, account: str, now: datetime) -> int:
        """How many of ``account``'s generations a poll pass would read now."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(G)
                    .where(
                        G.c.account == account,
                        G.c.next_poll_at.is_not(None),
                        G.c.next_poll_at <= now,
                    )
                ).scalar_one()
            )

    def archive_plan(
        self,
        *,
        accounts: Iterable[str] | None = None,
        roles: Iterable[str] = (),
        limit: int = 20,
        now: datetime | None = None,
        dead_owners: Sequence[str] = (),
    ) -> ArchivePlan:
        """The archive queue as :meth:`LeaseQueue.acquire` would take it, without leasing.

        The same two passes: files still savable, earliest deadline first (then the
        older generation), then already expired ones, most recently expired first.
        Files leased by ``dead_owners`` (:meth:`Store.dead_lease_owners`) count as free:
        the next pass takes them over at once.
        """
        now = now or utcnow()
        account_list = list(accounts) if accounts is not None else None

        def scoped(q: sa.Select[Any]) -> sa.Select[Any]:
            return q.where(A.c.account.in_(account_list)) if account_list is not None else q

        free = sa.or_(A.c.lease_until.is_(None), A.c.lease_until < now)
        if dead_owners:
            free = sa.or_(free, A.c.lease_owner.in_(list(dead_owners)))
        due = sa.or_(A.c.next_attempt_at.is_(None), A.c.next_attempt_at <= now)
        leasable = (A.c.state == _PENDING, free, due)
        cols = (
            A.c.id,
            A.c.account,
            A.c.provider,
            G.c.external_id,
            A.c.role,
            A.c.kind,
            A.c.expected_size,
            A.c.expires_at,
            A.c.attempts,
            A.c.last_error,
        )
        head = scoped(sa.select(*cols).join(G, G.c.id == A.c.generation_id).where(*leasable))
        files: list[PlannedFile] = []
        with self.engine.connect() as conn:
            if limit > 0:
                files += [
                    PlannedFile(*r)
                    for r in conn.execute(
                        head.where(A.c.expires_at >= now)
                        .order_by(A.c.expires_at, A.c.created_at, A.c.id)
                        .limit(limit)
                    )
                ]
            if len(files) < limit:
                files += [
                    PlannedFile(*r)
                    for r in conn.execute(
                        head.where(A.c.expires_at < now)
                        .order_by(A.c.expires_at.desc(), A.c.id)
                        .limit(limit - len(files))
                    )
                ]
            total = conn.execute(
                scoped(
                    sa.select(
                        sa.func.count(),
                        sa.func.coalesce(sa.func.sum(A.c.expected_size), 0),
                        sa.func.count(A.c.expected_size),
                    )
                    .select_from(A)
                    .where(*leasable)
                )
            ).one()
            leased = sa.case((free, 0), else_=1)
            backoff = sa.case((sa.and_(free, A.c.next_attempt_at > now), 1), else_=0)
            waiting = conn.execute(
                scoped(
                    sa.select(
                        sa.func.coalesce(sa.func.sum(leased), 0),
                        sa.func.coalesce(sa.func.sum(backoff), 0),
                    )
                    .select_from(A)
                    .where(A.c.state == _PENDING)
                )
            ).one()
            role_list = list(roles)
            to_queue = 0
            if role_list:
                to_queue = conn.execute(
                    scoped(
                        sa.select(sa.func.count())
                        .select_from(A)
                        .where(A.c.state == AssetState.SKIPPED.value, A.c.role.in_(role_list))
                    )
                ).scalar_one()
        return ArchivePlan(
            files=files,
            leasable=int(total[0]),
            known_bytes=int(total[1]),
            unknown_size=int(total[0]) - int(total[2]),
            backoff=int(waiting[1]),
            leased=int(waiting[0]),
            roles_to_queue=int(to_queue),
        )

    # ------------------------------------------------------------------ verify --repair

    @retry_conflicts
    def requeue_damaged(
        self, problems: Sequence[tuple[int, str]], *, now: datetime | None = None
    ) -> int:
        """Put archived files whose object is missing or damaged back in the queue.

        ``problems`` are (asset id, what was wrong). The row goes back to pending with
        its attempts reset and its one URL refresh given back, due now: the next pass
        downloads the file again if the provider still serves it and writes it over the
        bad object; if the deadline has passed and the provider has nothing, it becomes
        lost, which is then the truth. Only rows still archived are touched, so a file a
        replica re-archived meanwhile is left alone.
        """
        now = now or utcnow()
        done = 0
        with self.tx() as conn:
            for asset_id, reason in problems:
                done += conn.execute(
                    A.update()
                    .where(A.c.id == asset_id, A.c.state == AssetState.ARCHIVED.value)
                    .values(
                        state=_PENDING,
                        attempts=0,
                        next_attempt_at=now,
                        url_refreshed=False,
                        last_error=f"verify: {reason}"[:2000],
                        updated_at=now,
                    )
                ).rowcount
        return done
