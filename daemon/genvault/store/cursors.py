"""Sync cursors: where each stream's walk of a provider's history stands, and how it ended.

A page's rows and its cursor move in one transaction (see
:meth:`genvault.store.writes.WritePath.save_page`), so a killed sync resumes at the
last saved page. The end of a complete *full* walk reconciles: what the walk no
longer listed is marked gone at the provider (``generation.gone_at``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from genvault.logs import get_logger
from genvault.models import utcnow
from genvault.store.base import C, G, StoreBase

log = get_logger("genvault.store")


@dataclass(frozen=True, slots=True)
class CursorState:
    """One stream's cursor as :func:`genvault.walk.plan_walk` needs it."""

    high_water: datetime | None
    scan_position: int | None
    scan_high_water: datetime | None
    walk_full: bool = False
    walk_started_at: datetime | None = None
    walk_floor: datetime | None = None
    last_full_walk_at: datetime | None = None
    last_walk_complete: bool | None = None
    order_seen: str | None = None
    page_size_seen: int | None = None


@dataclass(frozen=True, slots=True)
class WalkMark:
    """The walk a page belongs to, kept in the cursor so a resumed walk stays the same."""

    full: bool
    started_at: datetime
    floor: datetime | None = None


@dataclass(frozen=True, slots=True)
class WalkEnding:
    """How a walk ended, written with its last page."""

    complete: bool
    reason: str | None = None
    """Why it is incomplete (None when complete)."""
    order_seen: str | None = None
    page_size_seen: int | None = None


@dataclass(frozen=True, slots=True)
class CursorUpdate:
    """What a page changes in its stream's cursor (written with the page's rows)."""

    stream: str
    scan_position: int | None
    """Where to resume; None once the walk ended."""
    scan_high_water: datetime | None
    complete: bool = False
    """The walk reached its end: promote scan_high_water to high_water."""
    walk: WalkMark | None = None
    ended: WalkEnding | None = None
    """Set on the walk's last page. A complete *full* walk also records what it listed
    and marks the stream's items it no longer found as gone (``generation.gone_at``)."""

    @property
    def finished(self) -> WalkEnding | None:
        if self.ended is not None:
            return self.ended
        return WalkEnding(complete=True) if self.complete else None


class CursorWrites(StoreBase):
    """Reading and moving the cursors (the page's rows are :class:`WritePath`'s)."""

    def get_cursor(self, account: str, stream: str) -> CursorState:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(
                    C.c.high_water,
                    C.c.scan_position,
                    C.c.scan_high_water,
                    C.c.walk_full,
                    C.c.walk_started_at,
                    C.c.walk_floor,
                    C.c.last_full_walk_at,
                    C.c.last_walk_complete,
                    C.c.order_seen,
                    C.c.page_size_seen,
                ).where(C.c.account == account, C.c.stream == stream)
            ).first()
        if row is None:
            return CursorState(None, None, None)
        return CursorState(**row._mapping)

    def sync_failed(
        self,
        provider: str,
        account: str,
        stream: str,
        error: str,
        *,
        ended: WalkEnding | None = None,
    ) -> None:
        """Record a stream's sync error. The walk in progress stays resumable, unless
        ``ended`` says it is over (then the next walk starts afresh, as a full walk)."""
        now = utcnow()
        values: dict[str, Any] = {"last_error": error[:2000], "last_run_at": now}
        if ended is not None:
            values.update(
                scan_position=None,
                scan_high_water=None,
                walk_full=False,
                walk_started_at=None,
                walk_floor=None,
                last_walk_complete=ended.complete,
                incomplete_reason=ended.reason,
            )
        with self.tx() as conn:
            self._ensure_cursor(conn, provider, account, stream)
            conn.execute(
                C.update().where(C.c.account == account, C.c.stream == stream).values(**values)
            )

    def _mark_listed(
        self,
        conn: Connection,
        provider: str,
        account: str,
        stream: str | None,
        external_ids: Sequence[str],
        now: datetime,
    ) -> None:
        """Note that a walk saw these (unchanged) items: listed now, not gone."""
        conn.execute(
            G.update()
            .where(
                G.c.provider == provider,
                G.c.account == account,
                self._one_of(G.c.external_id, external_ids),
            )
            .values(listed_at=now, gone_at=None, stream=sa.func.coalesce(stream, G.c.stream))
        )

    def _ensure_cursor(self, conn: Connection, provider: str, account: str, stream: str) -> None:
        conn.execute(
            self._insert(C)
            .values(provider=provider, account=account, stream=stream, items_seen=0)
            .on_conflict_do_nothing(index_elements=["account", "stream"])
        )

    def _write_cursor(
        self, conn: Connection, provider: str, account: str, cu: CursorUpdate, n: int, now: datetime
    ) -> None:
        self._ensure_cursor(conn, provider, account, cu.stream)
        values: dict[str, Any] = {
            "scan_position": cu.scan_position,
            "scan_high_water": cu.scan_high_water,
            "last_run_at": now,
            "last_error": None,
            "items_seen": C.c.items_seen + n,
        }
        if cu.walk is not None:
            values.update(
                walk_full=cu.walk.full,
                walk_started_at=cu.walk.started_at,
                walk_floor=cu.walk.floor,
            )
        ended = cu.finished
        if ended is not None:
            values.update(
                scan_position=None,
                scan_high_water=None,
                walk_full=False,
                walk_started_at=None,
                walk_floor=None,
                last_walk_complete=ended.complete,
                incomplete_reason=ended.reason,
            )
            if ended.order_seen is not None:
                values["order_seen"] = ended.order_seen
            if cu.ended is not None:
                values["page_size_seen"] = ended.page_size_seen
        if ended is not None and ended.complete:
            values.update(last_full_scan_at=now, last_success_at=now)
            if cu.walk is not None and cu.walk.full:
                values.update(
                    last_full_walk_at=now,
                    listed=self._reconcile(conn, provider, account, cu.stream, cu.walk, now),
                )
        conn.execute(
            C.update().where(C.c.account == account, C.c.stream == cu.stream).values(**values)
        )
        if ended is not None and ended.complete and cu.scan_high_water is not None:
            # never move the watermark backwards
            conn.execute(
                C.update()
                .where(C.c.account == account, C.c.stream == cu.stream)
                .values(high_water=cu.scan_high_water)
                .where(sa.or_(C.c.high_water.is_(None), C.c.high_water < cu.scan_high_water))
            )

    def _reconcile(
        self,
        conn: Connection,
        provider: str,
        account: str,
        stream: str,
        walk: WalkMark,
        now: datetime,
    ) -> int:
        """End of a complete full walk: mark what it no longer listed as gone; return
        how many items it listed. Only items the walk could have seen count: created
        before it started and, with a floor, not before the floor."""
        mine = sa.and_(G.c.provider == provider, G.c.account == account, G.c.stream == stream)
        unseen = [
            mine,
            G.c.gone_at.is_(None),
            sa.or_(G.c.listed_at.is_(None), G.c.listed_at < walk.started_at),
            G.c.created_at < walk.started_at,
        ]
        if walk.floor is not None:
            unseen.append(G.c.created_at >= walk.floor)
        gone = conn.execute(G.update().where(*unseen).values(gone_at=now)).rowcount
        if gone:
            log.info("sync.gone", account=account, stream=stream, generations=gone)
        listed = conn.execute(
            sa.select(sa.func.count()).select_from(G).where(mine, G.c.listed_at >= walk.started_at)
        ).scalar_one()
        return int(listed)
