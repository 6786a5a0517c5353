"""What :mod:`genvault.notify` has said: the ledger that keeps every message news.

A file is named once as at risk and once as lost; a lasting condition (a circuit open,
a stream failing) is said again only after the quiet period, and forgotten once it
clears. That memory is in the database, beside what it speaks of, so the next cron run
and every replica share it. Rows are written only after a message was delivered.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from genvault.models import Notification
from genvault.records import AssetState
from genvault.store.base import A, StoreBase
from genvault.store.reports import file_brief

N: sa.Table = Notification.__table__  # type: ignore[attr-defined]
_CHUNK = 500
"""Subjects per statement: bounded parameters whatever the backlog."""


class NotificationRecords(StoreBase):
    """The :class:`genvault.notify.NotificationLedger` protocol, on the database."""

    def notified(self, kind: str, subjects: Sequence[str]) -> dict[str, datetime]:
        """When each of ``subjects`` of ``kind`` was last said (those said at all)."""
        out: dict[str, datetime] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(subjects), _CHUNK):
                chunk = list(subjects[i : i + _CHUNK])
                for r in conn.execute(
                    sa.select(N.c.subject, N.c.sent_at).where(
                        N.c.kind == kind, N.c.subject.in_(chunk)
                    )
                ):
                    out[r.subject] = r.sent_at
        return out

    def mark_notified(self, kind: str, subjects: Sequence[str], at: datetime) -> None:
        """Record ``subjects`` as said at ``at`` (an upsert: a repeat moves the time)."""
        rows = [{"kind": kind, "subject": s[:512], "sent_at": at} for s in dict.fromkeys(subjects)]
        if not rows:
            return
        with self.tx() as conn:
            for i in range(0, len(rows), _CHUNK):
                stmt = self._insert(N).values(rows[i : i + _CHUNK])
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=[N.c.kind, N.c.subject],
                        set_={"sent_at": stmt.excluded.sent_at},
                    )
                )

    def forget_notified(self, kind: str, keep: Sequence[str]) -> None:
        """Forget what was said of ``kind`` except ``keep``: conditions that cleared."""
        with self.tx() as conn:
            q = sa.delete(N).where(N.c.kind == kind)
            if keep:
                q = q.where(N.c.subject.not_in(list(keep)))
            conn.execute(q)

    def lost_assets(self, limit: int = 1000) -> list[dict[str, Any]]:
        """Lost files not yet said to be lost, oldest deadline first (``limit`` at most)."""
        said = sa.select(N.c.subject).where(N.c.kind == "lost")
        with self.engine.connect() as conn:
            rows = conn.execute(
                file_brief()
                .where(
                    A.c.state == AssetState.LOST.value,
                    sa.cast(A.c.id, sa.String).not_in(said),
                )
                .order_by(A.c.expires_at, A.c.id)
                .limit(limit)
            ).all()
        return [dict(r._mapping) for r in rows]
