"""Sidecar bookkeeping: which generations need their metadata file (re)written.

A generation's sidecar (its metadata beside its files in the archive) is due when
something about it changed (``generation.sidecar_due``) and none of its files is
still pending. The flag is cleared only if the generation did not change again
while the sidecar was being written, so a change is never lost to a race.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from genvault.records import AssetState
from genvault.store.base import A, G, StoreBase, attach_files, retry_conflicts


class Sidecars(StoreBase):
    """The sidecars due, and marking them written."""

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
            attach_files(conn, gens)
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
