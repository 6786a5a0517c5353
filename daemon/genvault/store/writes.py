"""The sync and poll write path: a page of listings, or one status read, into the database.

Each call is one short transaction. :meth:`WritePath.save_page` upserts a page of
generations and their files *and* moves the stream's cursor; the poll side keeps
registered tasks due until they end (:meth:`WritePath.due_for_poll`,
:meth:`WritePath.save_polled`, :meth:`WritePath.poll_error`). Both go through one
upsert core: an unchanged listing (same fingerprint) writes nothing, a new file
becomes pending (or skipped, for roles not archived), a pending file's URL and
deadline follow the provider's latest word.

SQLite takes a page as an executemany (a list of parameter dicts: ~9x faster than
one multi-row VALUES statement); PostgreSQL as a binary COPY and one set-based
statement with the same ON CONFLICT clauses (:mod:`genvault.store.bulk_pg`).
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from genvault.expiry import file_deadline
from genvault.identity import fingerprint_json, url_key
from genvault.models import utcnow
from genvault.records import (
    AssetState,
    DeadlineSource,
    GenerationRecord,
    GenerationStatus,
)
from genvault.store import bulk_pg
from genvault.store.base import A, G, retry_conflicts
from genvault.store.cursors import CursorUpdate, CursorWrites
from genvault.store.queries.search import SearchQueries


@dataclass(frozen=True, slots=True)
class SaveResult:
    generations_new: int = 0
    generations_changed: int = 0
    assets_new: int = 0


@dataclass(frozen=True, slots=True)
class PollItem:
    id: int
    external_id: str
    poll_attempts: int
    poll_until: datetime | None
    status: str


class WritePath(CursorWrites, SearchQueries):
    """What sync and poll write; the search index follows (:class:`SearchQueries`)."""

    # ------------------------------------------------------------------ sync

    @retry_conflicts
    def save_page(
        self,
        *,
        provider: str,
        account: str,
        records: Sequence[GenerationRecord],
        cursor: CursorUpdate | None,
        archive_roles: frozenset[str],
        archive_kinds: frozenset[str] | None = None,
        retention: timedelta,
        poll_horizon: timedelta,
        source: str = "history",
        now: datetime | None = None,
        retention_source: DeadlineSource = DeadlineSource.DEFAULT,
    ) -> SaveResult:
        """Upsert one page of listing results and advance the cursor, in one transaction.

        ``retention`` is the deadline of items whose record names none, and
        ``retention_source`` where that rule comes from (documented or assumed).
        """
        now = now or utcnow()
        with self.tx() as conn:
            result = self._upsert(
                conn,
                provider,
                account,
                records,
                archive_roles,
                retention,
                poll_horizon,
                source,
                now,
                listing=True,
                stream=cursor.stream if cursor is not None else None,
                # A reconciliation walk notes every item it sees, unchanged ones too:
                # what it did not see by its end is gone at the provider.
                mark_unchanged=cursor is not None and cursor.walk is not None and cursor.walk.full,
                retention_source=retention_source,
                archive_kinds=archive_kinds,
            )
            if cursor is not None:
                self._write_cursor(conn, provider, account, cursor, len(records), now)
        self._analyze_if_grown(result.generations_new)
        return result

    # ------------------------------------------------------------------ upsert core

    # PostgreSQL plans the page lookups (``external_id = ANY(:ids)`` within an account)
    # from table statistics. A table that was never ANALYZEd, or has grown far past its
    # last ANALYZE (a first backfill), is guessed to hold a handful of rows, and the
    # lookup became a scan of the account's whole index range with the ids as a filter:
    # ~130 ms a page at 15,000 rows, growing with the table, so a sync went quadratic
    # (autovacuum only looks once a minute). So the store ANALYZEs the tables it fills
    # whenever the rows it wrote since the last ANALYZE outnumber the rows counted then
    # (and at least ANALYZE_AFTER_ROWS): seven ANALYZEs over a 100,000-item backfill
    # (~10 ms each), none in steady state.
    ANALYZE_AFTER_ROWS = 1000
    _rows_at_analyze: int | None = None
    """``pg_class.reltuples`` of ``generation`` at the last ANALYZE (read once, lazily)."""
    _rows_since_analyze = 0

    def _analyze_if_grown(self, rows_written: int) -> None:
        """ANALYZE ``generation`` and ``asset`` once a backfill has doubled them (PostgreSQL)."""
        if self.is_sqlite or rows_written <= 0:
            return
        if self._rows_at_analyze is None:
            with self.engine.connect() as conn:
                counted = conn.execute(
                    sa.text("SELECT reltuples FROM pg_class WHERE oid = 'generation'::regclass")
                ).scalar()
            self._rows_at_analyze = max(0, int(counted or 0))  # -1: never analyzed
        self._rows_since_analyze += rows_written
        if self._rows_since_analyze < max(self.ANALYZE_AFTER_ROWS, self._rows_at_analyze):
            return
        self._rows_at_analyze += self._rows_since_analyze
        self._rows_since_analyze = 0
        # Its own short transaction, after the page's (the page is saved whatever
        # happens here): ANALYZE's lock never conflicts with writers, only with another
        # ANALYZE or a VACUUM, so it waits a second at most and is skipped on any
        # error; a role that does not own the tables only gets a warning. Only the
        # lookup keys: statistics of ``raw`` (JSONB) cost most of the time, and any
        # ANALYZE updates the row counts; autovacuum does the rest later.
        with contextlib.suppress(sa.exc.DBAPIError), self.engine.connect() as conn:
            conn.execute(sa.text("SET LOCAL lock_timeout = '1s'"))
            conn.execute(
                sa.text(
                    "ANALYZE generation (provider, account, external_id), asset (generation_id)"
                )
            )
            conn.commit()

    def _upsert(
        self,
        conn: Connection,
        provider: str,
        account: str,
        records: Sequence[GenerationRecord],
        archive_roles: frozenset[str],
        retention: timedelta,
        poll_horizon: timedelta,
        source: str,
        now: datetime,
        *,
        listing: bool,
        next_poll: dict[str, datetime | None] | None = None,
        stream: str | None = None,
        mark_unchanged: bool = False,
        retention_source: DeadlineSource = DeadlineSource.DEFAULT,
        archive_kinds: frozenset[str] | None = None,
    ) -> SaveResult:
        if not records:
            return SaveResult()
        by_id: dict[str, GenerationRecord] = {}
        for r in records:  # a page can list an item twice while it drifts: keep the last
            by_id[r.external_id] = r
        ids = list(by_id)
        existing = {
            row.external_id: row
            for row in conn.execute(
                sa.select(G.c.id, G.c.external_id, G.c.fingerprint).where(
                    G.c.provider == provider,
                    G.c.account == account,
                    self._one_of(G.c.external_id, ids),
                )
            )
        }
        rows: list[dict[str, Any]] = []
        unchanged: list[str] = []
        for ext, r in by_id.items():
            fp, text = fingerprint_json(r.raw)  # PostgreSQL copies the text
            old = existing.get(ext)
            if listing and old is not None and old.fingerprint == fp:
                unchanged.append(ext)
                continue  # unchanged since we last saw it: nothing to write
            due: datetime | None
            if next_poll is not None:
                due = next_poll.get(ext)
            else:
                due = now if (not r.status.terminal or r.needs_detail) else None
            created = r.created_at or now
            rows.append(
                {
                    "provider": provider,
                    "account": account,
                    "external_id": ext,
                    "kind": (r.kind or None) and r.kind[:128],
                    "status": r.status.value,
                    "provider_status": r.provider_status[:64],
                    "prompt": r.prompt,
                    "model": (r.model or None) and r.model[:256],
                    "error": r.error,
                    "source": source,
                    "created_at": created,
                    "completed_at": r.completed_at,
                    "provider_updated_at": r.updated_at,
                    "expires_at": r.expires_at or created + retention,
                    "expires_source": (
                        (r.expires_source or DeadlineSource.ASSUMED)
                        if r.expires_at
                        else retention_source
                    ).value,
                    "next_poll_at": due,
                    "poll_attempts": 0,
                    "poll_until": now + poll_horizon if not r.status.terminal else None,
                    "fingerprint": fp if listing else (old.fingerprint if old else ""),
                    "sidecar_due": r.status is GenerationStatus.SUCCEEDED,
                    "raw": r.raw if self.is_sqlite or text is None else bulk_pg.JsonText(text),
                    "first_seen_at": now,
                    "updated_at": now,
                    "stream": stream,
                    "listed_at": now if listing else None,
                    "gone_at": None,
                }
            )
        if mark_unchanged and unchanged:
            self._mark_listed(conn, provider, account, stream, unchanged, now)
        if not rows:
            return SaveResult()
        ins = self._insert(G) if self.is_sqlite else bulk_pg.insert_from_stage(G, rows[0])
        update_cols = [
            "kind",
            "status",
            "provider_status",
            "prompt",
            "model",
            "error",
            "completed_at",
            "provider_updated_at",
            "expires_at",
            "expires_source",
            "next_poll_at",
            "fingerprint",
            "sidecar_due",
            "raw",
            "updated_at",
        ]
        set_: dict[str, Any] = {c: getattr(ins.excluded, c) for c in update_cols}
        # A status read may know less than the listing did (CrowdComputed's status endpoint
        # does not name the workflow): never blank out what we already know.
        for keep in ("kind", "model", "prompt"):
            set_[keep] = sa.func.coalesce(getattr(ins.excluded, keep), G.c[keep])
        set_["created_at"] = (
            sa.func.least(G.c.created_at, ins.excluded.created_at)
            if not self.is_sqlite
            else sa.func.min(G.c.created_at, ins.excluded.created_at)
        )
        set_["poll_until"] = sa.func.coalesce(G.c.poll_until, ins.excluded.poll_until)
        if listing:  # a status read says nothing about the listing
            set_["stream"] = sa.func.coalesce(ins.excluded.stream, G.c.stream)
            set_["listed_at"] = ins.excluded.listed_at
            set_["gone_at"] = None
        if next_poll is None:
            set_["poll_attempts"] = 0
        upsert = ins.on_conflict_do_update(
            index_elements=["provider", "account", "external_id"], set_=set_
        )
        gens = None  # PostgreSQL: what the upsert wrote, which the files need
        with self.indexing_new_generations(conn):
            if self.is_sqlite:
                conn.execute(upsert, rows)
            else:
                bulk_pg.copy_to_stage(conn, G, rows[0], rows)
                gens = {g.external_id: g for g in conn.execute(upsert.returning(*self._GEN))}
        new = sum(1 for row in rows if row["external_id"] not in existing)
        written = {row["external_id"] for row in rows}
        assets_new = self._upsert_assets(
            conn,
            provider,
            account,
            [by_id[e] for e in written if by_id[e].media],
            archive_roles,
            retention,
            now,
            authoritative=not listing,
            retention_source=retention_source,
            archive_kinds=archive_kinds,
            gens=gens,
        )
        return SaveResult(new, len(rows) - new, assets_new)

    # What the files of a generation take from it (their deadline, their tie-breaker).
    _GEN = (G.c.id, G.c.external_id, G.c.created_at, G.c.expires_at, G.c.expires_source)

    def _upsert_assets(
        self,
        conn: Connection,
        provider: str,
        account: str,
        records: Sequence[GenerationRecord],
        archive_roles: frozenset[str],
        retention: timedelta,
        now: datetime,
        *,
        authoritative: bool = False,
        retention_source: DeadlineSource = DeadlineSource.DEFAULT,
        archive_kinds: frozenset[str] | None = None,
        gens: dict[str, Any] | None = None,
    ) -> int:
        """Insert new files, refresh URLs of pending ones. ``authoritative`` (a detail
        read, which knows more than a listing) may also correct a pending file's role.
        ``gens``: the records' generation rows (:attr:`_GEN`) if the caller has them."""
        if not records:
            return 0
        if gens is None:
            gens = {
                row.external_id: row
                for row in conn.execute(
                    sa.select(*self._GEN).where(
                        G.c.provider == provider,
                        G.c.account == account,
                        self._one_of(G.c.external_id, [r.external_id for r in records]),
                    )
                )
            }
        gen_ids = [gens[r.external_id].id for r in records]
        existing: dict[int, dict[str, Any]] = defaultdict(dict)
        for row in conn.execute(
            sa.select(
                A.c.id,
                A.c.generation_id,
                A.c.url_key,
                A.c.position,
                A.c.state,
                A.c.source_url,
                A.c.role,
                A.c.kind,
            ).where(self._one_of(A.c.generation_id, gen_ids))
        ):
            existing[row.generation_id][row.url_key] = row
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for r in records:
            g = gens[r.external_id]
            have = existing.get(g.id, {})
            next_pos = max(row.position for row in have.values()) + 1 if have else 0
            for m in r.media:
                key = url_key(m.url)
                deadline, deadline_source = file_deadline(g, m, retention, retention_source)
                wanted = m.role.value in archive_roles and (
                    archive_kinds is None or m.kind.value in archive_kinds
                )
                old = have.get(key)
                if key not in have:
                    inserts.append(
                        {
                            "generation_id": g.id,
                            "provider": provider,
                            "account": account,
                            "url_key": key,
                            "source_url": m.url,
                            "role": m.role.value,
                            "kind": m.kind.value,
                            "position": next_pos,
                            "expected_size": m.size,
                            "expires_at": deadline,
                            "expires_source": deadline_source,
                            "created_at": g.created_at,
                            "state": (AssetState.PENDING if wanted else AssetState.SKIPPED).value,
                            "attempts": 0,
                            "url_refreshed": False,
                            "updated_at": now,
                        }
                    )
                    have[key] = None  # a later duplicate in this batch is not re-inserted
                    next_pos += 1
                elif old is not None and old.state in (
                    AssetState.PENDING.value,
                    AssetState.SKIPPED.value,
                ):
                    state = old.state
                    if old.state == AssetState.SKIPPED.value and wanted:
                        state = AssetState.PENDING.value
                    role, kind = old.role, old.kind
                    if authoritative and old.state == AssetState.PENDING.value:
                        role, kind = m.role.value, m.kind.value
                    if (old.source_url, state, role, kind) != (
                        m.url,
                        old.state,
                        old.role,
                        old.kind,
                    ):
                        updates.append(
                            {
                                "b_id": old.id,
                                "b_seen": old.state,
                                "b_url": m.url,
                                "b_exp": deadline,
                                "b_src": deadline_source,
                                "b_state": state,
                                "b_role": role,
                                "b_kind": kind,
                                "b_now": now,
                            }
                        )
        if inserts and self.is_sqlite:
            conn.execute(
                self._insert(A).on_conflict_do_nothing(index_elements=["generation_id", "url_key"]),
                inserts,
            )
        elif inserts:
            bulk_pg.copy_to_stage(conn, A, inserts[0], inserts)
            conn.execute(
                bulk_pg.insert_from_stage(A, inserts[0]).on_conflict_do_nothing(
                    index_elements=["generation_id", "url_key"]
                )
            )
        if updates:
            # Only if the file is still in the state read above: on PostgreSQL another
            # replica (or this process's archive workers) may have archived it since, and
            # an unconditional write would put it back to pending and archive it twice.
            conn.execute(
                A.update()
                .where(A.c.id == sa.bindparam("b_id"), A.c.state == sa.bindparam("b_seen"))
                .values(
                    source_url=sa.bindparam("b_url"),
                    expires_at=sa.bindparam("b_exp"),
                    expires_source=sa.bindparam("b_src"),
                    state=sa.bindparam("b_state"),
                    role=sa.bindparam("b_role"),
                    kind=sa.bindparam("b_kind"),
                    updated_at=sa.bindparam("b_now"),
                ),
                updates,
            )
        return len(inserts)

    # ------------------------------------------------------------------ poll

    def register_tasks(
        self,
        *,
        provider: str,
        account: str,
        items: Sequence[dict[str, Any]],
        source: str,
        poll_horizon: timedelta,
        now: datetime | None = None,
    ) -> int:
        """Store task ids from ``track``, intake or a webhook; due for a poll at once.

        ``items`` are dicts with ``id`` and optional ``created_at``/``prompt``.
        Re-registering a known id is a no-op, except that a webhook makes it due now.
        Returns how many were new.
        """
        now = now or utcnow()
        rows: list[dict[str, Any]] = [
            {
                "provider": provider,
                "account": account,
                "external_id": str(it["id"]),
                "status": GenerationStatus.QUEUED.value,
                "provider_status": "",
                "prompt": it.get("prompt"),
                "source": source,
                "created_at": it.get("created_at") or now,
                "next_poll_at": now,
                "poll_attempts": 0,
                "poll_until": now + poll_horizon,
                "fingerprint": "",
                "sidecar_due": False,
                "raw": {},
                "first_seen_at": now,
                "updated_at": now,
            }
            for it in items
        ]
        if not rows:
            return 0
        with self.tx() as conn:
            before = conn.execute(
                sa.select(sa.func.count())
                .select_from(G)
                .where(
                    G.c.provider == provider,
                    G.c.account == account,
                    G.c.external_id.in_([r["external_id"] for r in rows]),
                )
            ).scalar_one()
            ins = self._insert(G)
            if source == "webhook":
                stmt = ins.on_conflict_do_update(
                    index_elements=["provider", "account", "external_id"],
                    set_={"next_poll_at": now},
                    # equalities, not IN: an expanding IN parameter cannot go through executemany
                    where=sa.or_(
                        *(G.c.status == s for s in ("queued", "running", "unknown")),
                        G.c.next_poll_at.is_not(None),
                    ),
                )
            else:
                stmt = ins.on_conflict_do_nothing(
                    index_elements=["provider", "account", "external_id"]
                )
            with self.indexing_new_generations(conn):
                conn.execute(stmt, rows)
        return len({r["external_id"] for r in rows}) - int(before)

    def due_for_poll(self, account: str, now: datetime, limit: int) -> list[PollItem]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(G.c.id, G.c.external_id, G.c.poll_attempts, G.c.poll_until, G.c.status)
                .where(
                    G.c.account == account, G.c.next_poll_at.is_not(None), G.c.next_poll_at <= now
                )
                .order_by(G.c.next_poll_at)
                .limit(limit)
            ).all()
        return [
            PollItem(r.id, r.external_id, r.poll_attempts, r.poll_until, r.status) for r in rows
        ]

    @retry_conflicts
    def save_polled(
        self,
        *,
        provider: str,
        account: str,
        record: GenerationRecord,
        next_poll_at: datetime | None,
        poll_attempts: int,
        archive_roles: frozenset[str],
        archive_kinds: frozenset[str] | None = None,
        retention: timedelta,
        poll_horizon: timedelta,
        now: datetime | None = None,
        retention_source: DeadlineSource = DeadlineSource.DEFAULT,
    ) -> SaveResult:
        now = now or utcnow()
        with self.tx() as conn:
            res = self._upsert(
                conn,
                provider,
                account,
                [record],
                archive_roles,
                retention,
                poll_horizon,
                "history",
                now,
                listing=False,
                next_poll={record.external_id: next_poll_at},
                retention_source=retention_source,
                archive_kinds=archive_kinds,
            )
            conn.execute(
                G.update()
                .where(
                    G.c.provider == provider,
                    G.c.account == account,
                    G.c.external_id == record.external_id,
                )
                .values(poll_attempts=poll_attempts)
            )
        return res

    def poll_error(
        self,
        generation_id: int,
        *,
        error: str,
        next_poll_at: datetime | None,
        poll_attempts: int,
        give_up: bool,
    ) -> None:
        """Record a failed status read; ``give_up`` marks the generation failed for good."""
        values: dict[str, Any] = {
            "next_poll_at": next_poll_at,
            "poll_attempts": poll_attempts,
            "updated_at": utcnow(),
        }
        if give_up:
            values.update(
                status=GenerationStatus.FAILED.value, error=error[:2000], next_poll_at=None
            )
        with self.tx() as conn:
            conn.execute(G.update().where(G.c.id == generation_id).values(**values))
