"""What the user chose to archive, applied to files already known, and what it left out.

Each account archives the roles and media kinds its config names (``roles``,
``kinds``, or the ``[archive]`` defaults); files outside that choice are recorded as
*skipped*, never fetched. A choice can change between runs: turning thumbnails on must
queue the thumbnails already known (a re-sync would not: an unchanged listing is a
no-op), and narrowing an account to videos must stop it fetching its images. And
``status`` must say how many files were left out and why, so a skipped file never
looks like a missed one.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa

from genvault.models import utcnow
from genvault.records import AssetState
from genvault.store.base import A, StoreBase


class ArchiveChoices(StoreBase):
    """Applying each account's choice of roles and kinds; counting what it skips."""

    def apply_archive_choice(
        self,
        account: str,
        roles: Iterable[str],
        kinds: Iterable[str] | None,
        *,
        now: datetime | None = None,
    ) -> tuple[int, int]:
        """Queue ``account``'s skipped files the choice now wants, and skip its pending
        files it no longer wants (those not leased by a worker right now). Returns
        (queued, skipped)."""
        now = now or utcnow()
        roles = list(roles)
        wanted: sa.ColumnElement[bool] = A.c.role.in_(roles)
        if kinds is not None:
            wanted = sa.and_(wanted, A.c.kind.in_(list(kinds)))
        mine = A.c.account == account
        with self.tx() as conn:
            queued = conn.execute(
                A.update()
                .where(mine, A.c.state == AssetState.SKIPPED.value, wanted)
                .values(state=AssetState.PENDING.value, updated_at=now)
            ).rowcount
            skipped = conn.execute(
                A.update()
                .where(
                    mine,
                    A.c.state == AssetState.PENDING.value,
                    sa.not_(wanted),
                    sa.or_(A.c.lease_owner.is_(None), A.c.lease_until < now),
                )
                .values(state=AssetState.SKIPPED.value, updated_at=now)
            ).rowcount
        return int(queued or 0), int(skipped or 0)

    def skipped_files(self) -> dict[str, dict[tuple[str, str], int]]:
        """Skipped files per account, counted by (role, kind)."""
        out: dict[str, dict[tuple[str, str], int]] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(
                sa.select(A.c.account, A.c.role, A.c.kind, sa.func.count())
                .where(A.c.state == AssetState.SKIPPED.value)
                .group_by(A.c.account, A.c.role, A.c.kind)
            ):
                out.setdefault(r[0], {})[(r[1], r[2])] = int(r[3])
        return out
