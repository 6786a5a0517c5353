"""``genvault import``: what the database knows to match local files with, and the import's
own write path.

An import adopts a file the user downloaded earlier as the archived copy of one
asset. It is the archive job's write path with a local file for a download: the
asset is held (a lease in the name of the import, so no archive worker of a
replica downloads it meanwhile), the bytes are stored, and only then is the asset
marked archived, in one transaction, by :meth:`ImportRecords.record_import`. A
crash in between leaves a stored object whose row still says what it said: the
import (or the archive job, once the lease expires) writes the same key again.

The lease owner of an import carries no worker-lock tag: no reaper frees it while
the import runs, and an import that died leaves it to expire (on SQLite the next
process voids it at start, as any lease of a dead run).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from genvault.models import utcnow
from genvault.records import AssetState
from genvault.store.base import A, G, StoreBase, retry_conflicts
from genvault.store.leases import Outcome

IMPORT_NOTE_PREFIX = "import:"
"""How ``asset.last_error`` of an archived asset says it was imported, not downloaded."""


@dataclass(frozen=True, slots=True)
class KnownFile:
    """One file of an account, as import matching needs it (:meth:`ImportRecords.known_files`)."""

    asset_id: int
    generation_id: int
    external_id: str
    source_url: str
    url_key: str


@dataclass(frozen=True, slots=True)
class ImportCandidate:
    """One file of a generation that a local file may be
    (:meth:`ImportRecords.generation_files`)."""

    id: int
    generation_id: int
    provider: str
    account: str
    external_id: str
    generation_created_at: datetime
    source_url: str
    url_key: str
    role: str
    kind: str
    position: int
    state: AssetState
    expected_size: int | None
    expires_at: datetime
    size: int | None
    """The archived size (archived files only)."""
    storage_key: str | None
    imported: bool
    """Archived by an earlier import (its note says so)."""
    leased: bool
    """An archive worker (or another import) holds it right now."""


class ImportRecords(StoreBase):
    """The reads that match local files to assets, and the import's lease and commit."""

    def known_generations(self, account: str) -> list[tuple[int, str]]:
        """(generation id, external id) of every generation of ``account``."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(G.c.id, G.c.external_id).where(G.c.account == account)
            ).all()
        return [(r.id, r.external_id) for r in rows]

    def known_files(self, account: str) -> list[KnownFile]:
        """Every file of ``account`` with its URL (its name is a hint to a local file's)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(A.c.id, A.c.generation_id, G.c.external_id, A.c.source_url, A.c.url_key)
                .join(G, G.c.id == A.c.generation_id)
                .where(A.c.account == account)
            ).all()
        return [
            KnownFile(r.id, r.generation_id, r.external_id, r.source_url, r.url_key) for r in rows
        ]

    def generation_files(
        self, generation_id: int, now: datetime | None = None
    ) -> list[ImportCandidate]:
        """The files of one generation, in position order, with their current state."""
        now = now or utcnow()
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(A, G.c.external_id, G.c.created_at.label("gen_created"))
                .join(G, G.c.id == A.c.generation_id)
                .where(A.c.generation_id == generation_id)
                .order_by(A.c.position, A.c.id)
            ).all()
        return [
            ImportCandidate(
                id=r.id,
                generation_id=r.generation_id,
                provider=r.provider,
                account=r.account,
                external_id=r.external_id,
                generation_created_at=r.gen_created,
                source_url=r.source_url,
                url_key=r.url_key,
                role=r.role,
                kind=r.kind,
                position=r.position,
                state=AssetState(r.state),
                expected_size=r.expected_size,
                expires_at=r.expires_at,
                size=r.size,
                storage_key=r.storage_key,
                imported=(r.last_error or "").startswith(IMPORT_NOTE_PREFIX),
                leased=r.lease_owner is not None
                and r.lease_until is not None
                and r.lease_until >= now,
            )
            for r in rows
        ]

    @retry_conflicts
    def claim_for_import(self, owner: str, asset_id: int, lease_seconds: float) -> bool:
        """Hold a file that is not archived and that no one holds, for ``lease_seconds``:
        True when it is ours now."""
        now = utcnow()
        with self.tx() as conn:
            res = conn.execute(
                A.update()
                .where(
                    A.c.id == asset_id,
                    A.c.state != AssetState.ARCHIVED.value,
                    sa.or_(A.c.lease_owner.is_(None), A.c.lease_until < now),
                )
                .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds))
            )
        return bool(res.rowcount)

    def release_import(self, owner: str, asset_id: int) -> None:
        """Give a file back untouched (its bytes could not be stored)."""
        with self.tx() as conn:
            conn.execute(
                A.update()
                .where(A.c.id == asset_id, A.c.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )

    @retry_conflicts
    def record_import(self, owner: str, outcome: Outcome) -> bool:
        """Mark a file archived from a local copy, after its bytes were stored: one
        transaction, as :meth:`~genvault.store.leases.AssetLeases.finish` records a
        download, with ``outcome.error`` kept as the note that says it was imported
        (it starts with :data:`IMPORT_NOTE_PREFIX`). False when our hold on it was lost
        (it expired and a worker took the file): that worker records its own copy.
        """
        if outcome.state is not AssetState.ARCHIVED:
            raise ValueError("an import records archived files only")
        note = outcome.error or IMPORT_NOTE_PREFIX
        if not note.startswith(IMPORT_NOTE_PREFIX):
            note = f"{IMPORT_NOTE_PREFIX} {note}"
        now = utcnow()
        with self.tx() as conn:
            gen_id = conn.execute(
                sa.select(A.c.generation_id).where(A.c.id == outcome.asset_id)
            ).scalar()
            if gen_id is None:
                return False
            self.lock_generations(conn, [gen_id])
            res = conn.execute(
                A.update()
                .where(A.c.id == outcome.asset_id, A.c.lease_owner == owner)
                .values(
                    state=AssetState.ARCHIVED.value,
                    size=outcome.size,
                    sha256=outcome.sha256,
                    content_type=outcome.content_type,
                    storage_key=outcome.storage_key,
                    archived_at=now,
                    last_error=note[:2000],
                    next_attempt_at=None,
                    lease_owner=None,
                    lease_until=None,
                    updated_at=now,
                )
            )
            if not res.rowcount:
                return False
            conn.execute(G.update().where(G.c.id == gen_id).values(sidecar_due=True))
        return True
