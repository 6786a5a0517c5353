"""Reports: what the archive holds and what is at risk, per account (``status``, tests).

Grouped counts over the whole database: generations by status, files by state,
the next deadline, the last sync; the files whose deadline is near; and whole-table
listings that tests, export and verify compare against.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from genvault.models import utcnow
from genvault.records import AssetState
from genvault.store.base import A, C, G, StoreBase


class Reports(StoreBase):
    """Per-account summaries, files at risk, and whole-table listings."""

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
                file_brief()
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


def file_brief() -> sa.Select[Any]:
    """A file as ``status`` and notifications name it: account, the generation's
    external id, role, deadline and its source, attempts, last error."""
    return sa.select(
        A.c.id,
        A.c.account,
        A.c.provider,
        G.c.external_id,
        A.c.role,
        A.c.expires_at,
        A.c.expires_source,
        A.c.attempts,
        A.c.last_error,
    ).join(G, G.c.id == A.c.generation_id)
