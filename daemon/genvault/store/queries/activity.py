"""Recent archives and failures: what the status page and ``genvault status`` show.

Both lists answer "what happened lately", so both are newest first and bounded
by a ``limit`` the caller passes (the page shows a grid of 24 and a table of 20;
nothing here can return the whole table). Neither column they sort on
(``archived_at``, ``updated_at``) is indexed: the database sorts the matching
rows for the top ``limit`` (a bounded heap on both SQLite and PostgreSQL), which
is cheap at the sizes a status page is refreshed for. An index on
``asset(archived_at)`` is the fix if that ever shows in a profile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from genvault.records import AssetState, MediaRole
from genvault.store.base import A, G, StoreBase


@dataclass(frozen=True, slots=True)
class ArchivedMedia:
    """One archived file, with enough of its generation to caption it."""

    asset_id: int
    generation_id: int
    provider: str
    account: str
    external_id: str
    prompt: str | None
    model: str | None
    role: str
    kind: str
    content_type: str | None
    size: int | None
    storage_key: str
    archived_at: datetime | None


@dataclass(frozen=True, slots=True)
class StoredFile:
    """Where the bytes of one archived asset are, and what they are (``GET /files/{id}``)."""

    asset_id: int
    storage_key: str
    content_type: str | None
    size: int | None


@dataclass(frozen=True, slots=True)
class Failure:
    """A file that failed, was lost, or is pending after an error: the reason a person needs."""

    asset_id: int
    provider: str
    account: str
    external_id: str
    role: str
    state: str
    reason: str
    attempts: int
    updated_at: datetime
    expires_at: datetime
    next_attempt_at: datetime | None


_ROLE_RANK = {
    MediaRole.RESULT.value: 0,
    MediaRole.UPSCALE.value: 1,
    MediaRole.LAST_FRAME.value: 2,
    MediaRole.THUMBNAIL.value: 3,
}
"""Which file of a generation stands for it in the grid (lowest first)."""

LOST_WITHOUT_ERROR = "deadline passed before it could be saved"
"""The reason shown for a lost file when no error was recorded (it simply expired)."""


class ActivityQueries(StoreBase):
    def recent_archives(
        self, limit: int = 24, kinds: Sequence[str] = ("image",)
    ) -> list[ArchivedMedia]:
        """The newest archived files of these kinds, one per generation, newest first.

        Only rows with a storage key and, for images, an ``image/*`` content type:
        what the page can actually show as a thumbnail (and ``/files`` will serve).
        One file per generation (its result before an upscale, a last frame or a
        thumbnail), so an image and the provider's preview of it do not take two
        tiles. The newest ``4 * limit`` files are read and reduced here, which keeps
        the query a bounded top-N; a burst of many-image generations can make the
        grid a little shorter than ``limit``.
        """
        cond = [
            A.c.state == AssetState.ARCHIVED.value,
            A.c.storage_key.is_not(None),
            A.c.kind.in_(list(kinds)),
            # an "image" whose stored type is not image/* is not drawn (nor served)
            sa.or_(A.c.kind != "image", A.c.content_type.like("image/%")),
        ]
        q = (
            sa.select(
                A.c.id.label("asset_id"),
                A.c.generation_id,
                A.c.provider,
                A.c.account,
                G.c.external_id,
                G.c.prompt,
                G.c.model,
                A.c.role,
                A.c.kind,
                A.c.position,
                A.c.content_type,
                A.c.size,
                A.c.storage_key,
                A.c.archived_at,
            )
            .join(G, G.c.id == A.c.generation_id)
            .where(*cond)
            .order_by(A.c.archived_at.desc(), A.c.id.desc())
            .limit(limit * 4)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        best: dict[int, tuple[tuple[int, int, int], ArchivedMedia]] = {}
        for r in rows:  # newest first: dict order is the order of each generation's newest file
            rank = (_ROLE_RANK.get(r.role, len(_ROLE_RANK)), r.position, r.asset_id)
            held = best.get(r.generation_id)
            if held is None or rank < held[0]:
                fields = {k: v for k, v in r._mapping.items() if k != "position"}
                best[r.generation_id] = (rank, ArchivedMedia(**fields))
        return [media for _, media in best.values()][:limit]

    def stored_file(self, asset_id: int) -> StoredFile | None:
        """The archived file of asset ``asset_id``; None unless it is archived with a key."""
        q = sa.select(A.c.id.label("asset_id"), A.c.storage_key, A.c.content_type, A.c.size).where(
            A.c.id == asset_id,
            A.c.state == AssetState.ARCHIVED.value,
            A.c.storage_key.is_not(None),
        )
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return StoredFile(**row._mapping) if row is not None else None

    def recent_failures(self, limit: int = 20) -> list[Failure]:
        """Failed and lost files, and pending ones whose last attempt failed, newest first."""
        q = (
            sa.select(
                A.c.id,
                A.c.provider,
                A.c.account,
                G.c.external_id,
                A.c.role,
                A.c.state,
                A.c.last_error,
                A.c.attempts,
                A.c.updated_at,
                A.c.expires_at,
                A.c.next_attempt_at,
            )
            .join(G, G.c.id == A.c.generation_id)
            .where(
                sa.or_(
                    A.c.state.in_([AssetState.FAILED.value, AssetState.LOST.value]),
                    sa.and_(
                        A.c.state == AssetState.PENDING.value,
                        A.c.last_error.is_not(None),
                    ),
                )
            )
            .order_by(A.c.updated_at.desc(), A.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [
            Failure(
                asset_id=r.id,
                provider=r.provider,
                account=r.account,
                external_id=r.external_id,
                role=r.role,
                state=r.state,
                reason=r.last_error
                or (LOST_WITHOUT_ERROR if r.state == AssetState.LOST.value else "unknown error"),
                attempts=r.attempts,
                updated_at=r.updated_at,
                expires_at=r.expires_at,
                next_attempt_at=r.next_attempt_at,
            )
            for r in rows
        ]
