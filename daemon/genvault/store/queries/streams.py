"""Completeness per account and history stream: what ``status``, the page and ``/metrics`` say.

A *stream* is one history listing of an account (one ``sync_cursor`` row: a
CrowdComputed workflow, GeminiGen's and Tengr.ai's ``all``). Generations known only
by id (tracked, intake, webhooks: ``generation.stream`` NULL) form the pseudo-stream
``(tracked)``, reported only when such generations exist. The figures, per
(account, stream):

``listed``
    ``sync_cursor.listed``: the items the last complete full walk listed (None before
    the first one).
``known``
    Generations of the stream not gone (``gone_at`` NULL). ``gone`` counts the others.
``archived`` / ``pending``
    Archived / pending files of the stream's generations (gone ones included: a file
    captured before its generation went is archived; a pending one may still be
    fetched while its URL lives, and then also counts in ``gone_before_capture``).
``awaiting_read``
    Generations of the stream with ``next_poll_at`` set: a status or detail read is
    still due, so their full set of files may not be known yet.
``missing``
    Files of not-gone generations in state failed or lost: what the archive should
    hold and will not get on its own (``genvault retry`` may).
``gone_before_capture``
    Files, neither archived nor skipped, of generations a complete full walk found
    gone (``gone_at`` set): deleted or expired at the provider before genvault got them.
``last_complete_walk_at`` / ``last_complete_walk_age_seconds``
    ``sync_cursor.last_success_at``: the end of the last complete walk of any kind,
    and its age at ``now``.
``last_full_walk_at``
    The end of the last complete full walk (the reconciliation).
``last_walk_complete``, ``incomplete_reason``, ``error``, ``order_seen``, ``page_size_seen``
    As the cursor has them (``error`` is its ``last_error``: the stream's last sync
    error, cleared by the next page saved).
``walking``
    A walk is in progress (``scan_position`` set).
``complete``
    The last walk that ended was complete, the stream has no sync error, and nothing is
    missing. A cursor whose ``last_walk_complete`` is NULL (written before schema 0004)
    counts as complete when it has a ``last_success_at``. For ``(tracked)``: nothing
    missing. A stream that has generations but no cursor has never been walked: not
    complete.

Given the configured streams of each account (``configured``), the report also
lists a configured stream the database knows nothing of (never walked, for instance
because the sync of the stream before it failed: not complete, every figure 0), and
marks a stream the configuration no longer lists as ``retired``: its walks no longer
matter, so it is complete when nothing is missing, like ``(tracked)``.

Cost: three queries on one connection, whatever the row count: the cursors (a small
table), generations grouped by (account, stream) (the columns of
``ix_generation_stream``), and files joined to their generation grouped by
(account, stream) with conditional sums (one pass over ``asset``, hashed against
``generation``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from genvault.records import AssetState
from genvault.store.base import A, C, G, StoreBase

TRACKED = "(tracked)"
"""The name of the pseudo-stream of generations no listing walks (``stream`` NULL)."""


@dataclass(frozen=True, slots=True)
class StreamReport:
    """The reconciliation figures of one (account, stream); see the module docstring."""

    account: str
    stream: str
    """The stream's name, or :data:`TRACKED` for generations known only by id."""
    tracked: bool
    """True for the ``(tracked)`` pseudo-stream (no listing, no cursor)."""
    listed: int | None
    known: int
    gone: int
    """Generations a complete full walk found gone."""
    archived: int
    pending: int
    awaiting_read: int
    missing: int
    gone_before_capture: int
    last_complete_walk_at: datetime | None
    last_complete_walk_age_seconds: float | None
    last_full_walk_at: datetime | None
    last_walk_complete: bool | None
    incomplete_reason: str | None
    error: str | None
    order_seen: str | None
    page_size_seen: int | None
    walking: bool
    complete: bool
    retired: bool = False
    """A history stream the configuration no longer lists (``configured`` was given)."""

    @classmethod
    def never_walked(cls, account: str, stream: str) -> StreamReport:
        """A configured stream with no cursor and no generations: nothing known, not complete."""
        return cls(
            account=account,
            stream=stream,
            tracked=False,
            listed=None,
            known=0,
            gone=0,
            archived=0,
            pending=0,
            awaiting_read=0,
            missing=0,
            gone_before_capture=0,
            last_complete_walk_at=None,
            last_complete_walk_age_seconds=None,
            last_full_walk_at=None,
            last_walk_complete=None,
            incomplete_reason=None,
            error=None,
            order_seen=None,
            page_size_seen=None,
            walking=False,
            complete=False,
        )


def with_configured(
    reports: Sequence[StreamReport], configured: Mapping[str, Sequence[str]]
) -> list[StreamReport]:
    """Add the configured streams never walked; mark the ones no longer configured retired.

    ``configured``: account -> its history streams (an empty sequence for an account
    with no listing). Accounts absent from it are left as they are.
    """
    out: list[StreamReport] = []
    by_account: dict[str, list[StreamReport]] = {}
    for r in reports:
        by_account.setdefault(r.account, []).append(r)
    for account in sorted(set(by_account) | set(configured)):
        rows = by_account.get(account, [])
        wanted = configured.get(account)
        if wanted is None:
            out.extend(rows)
            continue
        seen = {r.stream for r in rows if not r.tracked}
        listings = [
            r if r.stream in wanted else replace(r, retired=True, complete=r.missing == 0)
            for r in rows
            if not r.tracked
        ]
        listings += [StreamReport.never_walked(account, s) for s in wanted if s not in seen]
        listings.sort(key=lambda r: r.stream)
        out.extend(listings)
        out.extend(r for r in rows if r.tracked)
    return out


def _n(value: Any) -> int:
    return int(value or 0)


def stream_statements(accounts: Sequence[str] | None = None) -> dict[str, sa.Select[Any]]:
    """The report's queries by name (``EXPLAIN`` them on PostgreSQL to see what they cost)."""
    gone = G.c.gone_at.is_not(None)
    state = A.c.state

    def count_if(*cond: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
        return sa.func.coalesce(sa.func.sum(sa.case((sa.and_(*cond), 1), else_=0)), 0)

    cursors = sa.select(
        C.c.account,
        C.c.stream,
        C.c.listed,
        C.c.last_success_at,
        C.c.last_full_walk_at,
        C.c.last_walk_complete,
        C.c.incomplete_reason,
        C.c.last_error,
        C.c.order_seen,
        C.c.page_size_seen,
        C.c.scan_position,
    )
    generations = sa.select(
        G.c.account,
        G.c.stream,
        count_if(G.c.gone_at.is_(None)).label("known"),
        count_if(gone).label("gone"),
        count_if(G.c.next_poll_at.is_not(None)).label("awaiting_read"),
    ).group_by(G.c.account, G.c.stream)
    files = (
        sa.select(
            G.c.account,
            G.c.stream,
            count_if(state == AssetState.ARCHIVED.value).label("archived"),
            count_if(state == AssetState.PENDING.value).label("pending"),
            count_if(
                G.c.gone_at.is_(None),
                state.in_([AssetState.FAILED.value, AssetState.LOST.value]),
            ).label("missing"),
            count_if(
                gone,
                state.not_in([AssetState.ARCHIVED.value, AssetState.SKIPPED.value]),
            ).label("gone_before_capture"),
        )
        .select_from(A.join(G, G.c.id == A.c.generation_id))
        .group_by(G.c.account, G.c.stream)
    )
    if accounts is not None:
        names = list(accounts)
        cursors = cursors.where(C.c.account.in_(names))
        generations = generations.where(G.c.account.in_(names))
        files = files.where(A.c.account.in_(names), G.c.account.in_(names))
    return {"cursors": cursors, "generations": generations, "files": files}


def read_stream_report(
    conn: Connection, accounts: Sequence[str] | None, now: datetime
) -> list[StreamReport]:
    """:meth:`StreamQueries.stream_report` on a connection the caller holds (the metrics
    scrape reads it with its other gauges, on its one connection)."""
    q = stream_statements(accounts)
    cursors = {(r.account, r.stream): r for r in conn.execute(q["cursors"])}
    gens = {(r.account, r.stream): r for r in conn.execute(q["generations"])}
    files = {(r.account, r.stream): r for r in conn.execute(q["files"])}
    out = []
    for account, stream in sorted(
        set(cursors) | set(gens) | set(files), key=lambda k: (k[0], k[1] is None, k[1] or "")
    ):
        cur, gen, fil = (
            cursors.get((account, stream)),
            gens.get((account, stream)),
            files.get((account, stream)),
        )
        tracked = stream is None
        missing = _n(fil.missing) if fil else 0
        last_ok: datetime | None = cur.last_success_at if cur else None  # UTC-aware columns
        walk_complete: bool | None = cur.last_walk_complete if cur else None
        error = cur.last_error if cur else None
        if tracked:
            complete = missing == 0
        else:
            ended_complete = walk_complete if walk_complete is not None else last_ok is not None
            complete = cur is not None and ended_complete and error is None and missing == 0
        out.append(
            StreamReport(
                account=account,
                stream=TRACKED if tracked else stream,
                tracked=tracked,
                listed=cur.listed if cur else None,
                known=_n(gen.known) if gen else 0,
                gone=_n(gen.gone) if gen else 0,
                archived=_n(fil.archived) if fil else 0,
                pending=_n(fil.pending) if fil else 0,
                awaiting_read=_n(gen.awaiting_read) if gen else 0,
                missing=missing,
                gone_before_capture=_n(fil.gone_before_capture) if fil else 0,
                last_complete_walk_at=last_ok,
                last_complete_walk_age_seconds=(now - last_ok).total_seconds()
                if last_ok is not None
                else None,
                last_full_walk_at=cur.last_full_walk_at if cur else None,
                last_walk_complete=walk_complete,
                incomplete_reason=cur.incomplete_reason if cur else None,
                error=error,
                order_seen=cur.order_seen if cur else None,
                page_size_seen=cur.page_size_seen if cur else None,
                walking=cur is not None and cur.scan_position is not None,
                complete=complete,
            )
        )
    return out


class StreamQueries(StoreBase):
    def stream_report(
        self,
        accounts: Sequence[str] | None = None,
        now: datetime | None = None,
        *,
        configured: Mapping[str, Sequence[str]] | None = None,
    ) -> list[StreamReport]:
        """Completeness per (account, stream), by account then stream (``(tracked)`` last).

        ``accounts``: only these (None: every account in the database); ``now``: the time
        walk ages are measured at (default: the current time); ``configured``: each
        account's configured history streams (see :func:`with_configured`).
        """
        when = now or datetime.now(UTC)
        with self.engine.connect() as conn:
            reports = read_stream_report(conn, accounts, when)
        return reports if configured is None else with_configured(reports, configured)
