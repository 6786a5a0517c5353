"""The gauges ``/metrics`` reads from the database at scrape time.

Why from the database and not from counters in memory: every replica must report
the same backlog, and a process restarted a minute ago must not report an empty
one. A scrape runs every 15-60 s, so it costs eight grouped queries on one
connection, whatever the number of rows, and no per-row work in Python:

* assets by account and state, with the stored bytes: one pass over ``asset``
  (the bytes need the heap, so the counts ride along instead of a second scan;
  about 90 ms for 300k files on PostgreSQL, the biggest share of a scrape);
* pending assets by account: the at-risk count and the earliest deadline, from
  the partial index ``ix_asset_lease`` (it holds exactly the pending rows);
* generations by account and status (the columns of ``ix_generation_account_status``);
* the last completed sync per account, and the stored circuit states (small tables);
* completeness per account and history stream (:mod:`genvault.store.queries.streams`: the
  cursors, generations by stream, and files joined to their generation by stream; the
  join makes it about as costly as the five above together: ~0.3 s for 1M files on
  PostgreSQL, the same as ``Store.summary``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from genvault.records import AssetState
from genvault.store.base import A, C, G, H, StoreBase
from genvault.store.queries.streams import StreamReport, read_stream_report, with_configured


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """What the database says at one scrape; accounts absent from a map have no rows."""

    assets: dict[tuple[str, str], int] = field(default_factory=dict)
    """(account, state) -> number of files."""
    stored_bytes: dict[str, int] = field(default_factory=dict)
    """account -> bytes of archived files."""
    at_risk: dict[str, int] = field(default_factory=dict)
    """account -> pending files due within the at-risk window (overdue ones included)."""
    earliest_deadline: dict[str, datetime] = field(default_factory=dict)
    """account -> the earliest deadline among its pending files."""
    generations: dict[tuple[str, str], int] = field(default_factory=dict)
    """(account, status) -> number of generations."""
    last_sync: dict[str, datetime] = field(default_factory=dict)
    """account -> when its last history walk completed (the latest over its streams)."""
    circuits: dict[str, str] = field(default_factory=dict)
    """account -> stored circuit state (``closed``, ``open``, ``half_open``)."""
    streams: list[StreamReport] = field(default_factory=list)
    """Completeness per (account, stream) (:meth:`genvault.store.Store.stream_report`)."""


def _aware(value: Any) -> datetime | None:
    """Aggregates over UTC columns may come back naive (SQLite) or as text: normalize."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _statements(at_risk_within: timedelta, now: datetime) -> dict[str, sa.Select[Any]]:
    """The scrape's queries by name (``EXPLAIN`` them on PostgreSQL to see what a scrape costs)."""
    due = sa.case((A.c.expires_at <= now + at_risk_within, 1), else_=0)
    return {
        "assets": sa.select(
            A.c.account, A.c.state, sa.func.count(), sa.func.coalesce(sa.func.sum(A.c.size), 0)
        ).group_by(A.c.account, A.c.state),
        "pending": sa.select(A.c.account, sa.func.sum(due), sa.func.min(A.c.expires_at))
        .where(A.c.state == AssetState.PENDING.value)
        .group_by(A.c.account),
        "generations": sa.select(G.c.account, G.c.status, sa.func.count()).group_by(
            G.c.account, G.c.status
        ),
        "last_sync": sa.select(C.c.account, sa.func.max(C.c.last_success_at)).group_by(C.c.account),
        "circuits": sa.select(H.c.account, H.c.circuit),
    }


class MetricsQueries(StoreBase):
    def metrics_snapshot(
        self,
        *,
        at_risk_within: timedelta,
        now: datetime,
        configured: Mapping[str, Sequence[str]] | None = None,
    ) -> MetricsSnapshot:
        """Everything the scrape-time gauges need, read on one connection.

        ``configured``: each account's history streams, so a stream never walked is
        reported too (see :func:`genvault.store.queries.streams.with_configured`).
        """
        snap = MetricsSnapshot()
        q = _statements(at_risk_within, now)
        with self.engine.connect() as conn:
            for account, state, count, size in conn.execute(q["assets"]):
                snap.assets[(account, state)] = int(count)
                if state == AssetState.ARCHIVED.value:
                    snap.stored_bytes[account] = int(size)
            for account, at_risk, earliest in conn.execute(q["pending"]):
                snap.at_risk[account] = int(at_risk or 0)
                deadline = _aware(earliest)
                if deadline is not None:
                    snap.earliest_deadline[account] = deadline
            for account, status, count in conn.execute(q["generations"]):
                snap.generations[(account, status)] = int(count)
            for account, last in conn.execute(q["last_sync"]):
                when = _aware(last)
                if when is not None:
                    snap.last_sync[account] = when
            for account, circuit in conn.execute(q["circuits"]):
                snap.circuits[account] = circuit
            streams = read_stream_report(conn, None, now)
        snap.streams.extend(streams if configured is None else with_configured(streams, configured))
        return snap
