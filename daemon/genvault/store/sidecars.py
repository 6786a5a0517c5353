"""Sidecar bookkeeping: which generations need their metadata file (re)written.

A generation's sidecar (its metadata beside its files in the archive) is due when
something about it changed (``generation.sidecar_due``) and none of its files is
still pending. The flag is cleared only if the generation did not change again
while the sidecar was being written, so a change is never lost to a race.

Replicas on PostgreSQL share the sidecars due instead of each writing them all
(:meth:`Sidecars.claim_sidecars`): three ``run --once`` replicas each rewrote every
sidecar of the run at its end (960 PUTs each in benchmark 6), which kept them
running ~6 s after their last file, a sixth of the run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from genvault.records import AssetState
from genvault.store.base import A, G, StoreBase, attach_files, retry_conflicts


@dataclass
class SidecarClaim:
    """A batch of due sidecars held by this worker (:meth:`Sidecars.claim_sidecars`)."""

    generations: list[dict[str, Any]]
    written: list[tuple[int, datetime]] = field(default_factory=list)
    """Set by the caller once those sidecars are durable: (id, updated_at seen)."""


def _due_query(
    limit: int, accounts: Iterable[str] | None, generations: Iterable[int] | None = None
) -> sa.Select[Any]:
    pending = (
        sa.select(A.c.id)
        .where(A.c.generation_id == G.c.id, A.c.state == AssetState.PENDING.value)
        .exists()
    )
    q = sa.select(G).where(G.c.sidecar_due.is_(True), ~pending).limit(limit)
    if accounts is not None:
        q = q.where(G.c.account.in_(list(accounts)))
    if generations is not None:
        q = q.where(G.c.id.in_(sorted(generations)))
    return q


_WRITTEN = (
    G.update()
    .where(G.c.id == sa.bindparam("gid"), G.c.updated_at == sa.bindparam("seen"))
    .values(sidecar_due=False)
)
"""Clear a flag unless the generation changed since it was read."""


class Sidecars(StoreBase):
    """The sidecars due, and marking them written."""

    def sidecars_due(
        self,
        limit: int,
        accounts: Iterable[str] | None = None,
        generations: Iterable[int] | None = None,
    ) -> list[dict[str, Any]]:
        """Generations whose sidecar must be (re)written: nothing pending, something changed.

        ``generations``: only among these ids (an archive pass asks about the
        generations whose files it just recorded).
        """
        q = _due_query(limit, accounts, generations)
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
            conn.execute(_WRITTEN, [{"gid": gid, "seen": seen} for gid, seen in done])

    @contextlib.contextmanager
    def claim_sidecars(
        self,
        limit: int,
        accounts: Iterable[str] | None = None,
        generations: Iterable[int] | None = None,
    ) -> Iterator[SidecarClaim]:
        """PostgreSQL: hold up to ``limit`` due generations while their sidecars are written.

        The rows are locked ``FOR UPDATE SKIP LOCKED`` in one transaction that lasts
        the batch, so another replica's claim skips them and takes the next ones; the
        flags of ``claim.written`` are cleared in the same transaction at the end,
        unless the generation changed meanwhile (as :meth:`sidecars_written`). A
        failure or a kill rolls it back: the flags stay and the sidecars are written
        again. Nobody else waits on the locks in practice: the rows have no pending
        file left for an archive pass to finish, and a sync that changes one waits
        for a batch of PUTs at most. ``generations``: as for :meth:`sidecars_due`.
        """
        if self.is_sqlite:
            raise NotImplementedError("one process per SQLite database: use sidecars_due")
        q = _due_query(limit, accounts, generations).with_for_update(of=G, skip_locked=True)
        with self.tx() as conn:
            gens = [dict(r._mapping) for r in conn.execute(q)]
            if gens:
                attach_files(conn, gens)
            claim = SidecarClaim(gens)
            yield claim
            if claim.written:
                rows = [{"gid": gid, "seen": seen} for gid, seen in sorted(claim.written)]
                conn.execute(_WRITTEN, rows)
