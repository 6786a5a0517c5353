"""The normalized shapes every provider adapter produces, and the state enums.

Adapters turn each API's JSON into :class:`GenerationRecord` (one generation
with its :class:`MediaRecord` files). These are plain frozen dataclasses, not
database rows: parsing never touches the DB, so parsers are pure functions
that unit tests can feed verbatim payloads to.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class GenerationStatus(enum.StrEnum):
    """Normalized lifecycle of a generation (task) at the provider."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @property
    def terminal(self) -> bool:
        return self in (GenerationStatus.SUCCEEDED, GenerationStatus.FAILED)


class AssetState(enum.StrEnum):
    """Where one media file is in the archive pipeline.

    pending  -> archived   (downloaded, verified, stored)
    pending  -> failed     (permanent error before the deadline: too big, not media)
    pending  -> lost       (the deadline passed, or the URL died, before we saved it)
    skipped                (a role the config does not archive, e.g. references)
    """

    PENDING = "pending"
    ARCHIVED = "archived"
    FAILED = "failed"
    LOST = "lost"
    SKIPPED = "skipped"


class MediaRole(enum.StrEnum):
    """Why a file belongs to a generation."""

    RESULT = "result"
    THUMBNAIL = "thumbnail"
    LAST_FRAME = "last_frame"
    UPSCALE = "upscale"
    REFERENCE = "reference"


class MediaKind(enum.StrEnum):
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    OTHER = "other"


class DeadlineSource(enum.StrEnum):
    """Where a file's deadline comes from, so a guessed deadline never looks like a fact.

    ``status``, the sidecar and ``export`` show it beside every deadline.
    """

    PROVIDER = "provider"
    """The provider said so for this item (GeminiGen's ``expired_at``)."""
    RULE = "rule"
    """A retention its documents state (Akool's 7 days, Tengr.ai's 8 days)."""
    SIGNED_URL = "signed_url"
    """The expiry signed into the file's URL (S3 SigV4, CloudFront, ``ex=``)."""
    ASSUMED = "assumed"
    """A configurable guess where the documents are silent (CrowdComputed's
    ``retention_hours``, QuickRouter's ``url_lifetime_hours``, GeminiGen without
    ``expired_at``)."""
    DEFAULT = "default"
    """Nothing known at all: genvault's own fallback, the weakest guess."""


STATED_SOURCES: frozenset[str] = frozenset(
    {DeadlineSource.PROVIDER, DeadlineSource.RULE, DeadlineSource.SIGNED_URL}
)
"""Deadline sources that are facts; every other source (or none) is shown as a guess."""


@dataclass(frozen=True, slots=True)
class MediaRecord:
    """One file of a generation, as the provider lists it."""

    url: str
    role: MediaRole = MediaRole.RESULT
    kind: MediaKind = MediaKind.OTHER
    size: int | None = None
    """Size the provider announces, if any; the download verifies against Content-Length."""
    content_type: str | None = None
    url_expires_at: datetime | None = None
    """A deadline encoded in the URL itself (signed URLs), filled in by the adapter."""


@dataclass(frozen=True, slots=True)
class GenerationRecord:
    """One generation (task) normalized from a provider payload."""

    external_id: str
    status: GenerationStatus
    provider_status: str
    created_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime | None = None
    """The provider's own last-change time, used as the incremental-sync watermark."""
    expires_at: datetime | None = None
    """When the provider deletes the results (provider value, else its documented rule)."""
    expires_source: DeadlineSource | None = None
    """Where ``expires_at`` comes from (None when it is None)."""
    kind: str | None = None
    model: str | None = None
    prompt: str | None = None
    error: str | None = None
    media: tuple[MediaRecord, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict)
    needs_detail: bool = False
    """True when the listing is known to be incomplete and the detail endpoint must be read."""


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a provider's history listing, as the server answered it.

    ``position`` is what was asked for (a page number or an offset). Whether the
    walk goes on is not the adapter's call: :mod:`genvault.walk` decides from
    ``got``, ``total`` and the ids, so every adapter's pages end walks the same way.
    """

    records: tuple[GenerationRecord, ...]
    position: int
    got: int
    """Items in the body, parsed or not: what "a short page" is measured on."""
    total: int | None = None
    """The API's count of the whole listing, when it gives one."""
    page_size: int | None = None
    """The page size the server says it used (it may cap the one asked for)."""
    errors: int = 0
    """Items on this page that could not be parsed (logged and counted, not fatal)."""
