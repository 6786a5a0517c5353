"""SQLModel tables: Generation, Asset, SyncCursor, ProviderHealth.

Only :mod:`genvault.store` queries them. Every datetime column is UTC-aware
(:class:`UTCDateTime`): SQLite returns naive values, so the type re-attaches
UTC on the way out and refuses naive values on the way in, which keeps every
comparison in the code honest on both databases.

Indexes exist for the queries that run per item: the pending-asset lease
(``ix_asset_lease``), the poll queue (``ix_generation_poll``), sidecars due, and
the per-account counts behind ``status``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel
from sqlmodel._compat import SQLModelConfig


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _table_config() -> SQLModelConfig:
    """Each table class's pydantic config: its validator is built when first used.

    genvault reads and writes these tables through their ``__table__`` (SQLAlchemy
    Core, :mod:`genvault.store`) and never validates or constructs a model instance,
    so building five validators as this module loads was ~3 ms of every start for
    nothing; a caller that does construct one gets it built then (``defer_build``).
    """
    return SQLModelConfig(defer_build=True)


class Generation(SQLModel, table=True):
    """One generation (task) at a provider, with its last known payload."""

    __tablename__ = "generation"
    model_config = _table_config()
    __table_args__ = (
        sa.UniqueConstraint("provider", "account", "external_id", name="uq_generation_external"),
        sa.Index(
            "ix_generation_poll",
            "next_poll_at",
            postgresql_where=sa.text("next_poll_at IS NOT NULL"),
            sqlite_where=sa.text("next_poll_at IS NOT NULL"),
        ),
        sa.Index(
            "ix_generation_sidecar",
            "id",
            postgresql_where=sa.text("sidecar_due"),
            sqlite_where=sa.text("sidecar_due"),
        ),
        sa.Index("ix_generation_account_status", "account", "status"),
        sa.Index("ix_generation_stream", "account", "stream"),
    )

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=32)
    account: str = Field(max_length=64)
    external_id: str = Field(max_length=512)
    kind: str | None = Field(default=None, max_length=128)
    status: str = Field(max_length=16)
    provider_status: str = Field(default="", max_length=64)
    prompt: str | None = Field(default=None, sa_type=sa.Text)
    model: str | None = Field(default=None, max_length=256)
    error: str | None = Field(default=None, sa_type=sa.Text)
    source: str = Field(default="history", max_length=16)
    """How we learned of it: history, track (CLI/intake), webhook."""
    created_at: datetime = Field(sa_type=UTCDateTime)
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    provider_updated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    expires_source: str | None = Field(default=None, max_length=16)
    """Where ``expires_at`` comes from (:class:`genvault.records.DeadlineSource`)."""
    next_poll_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    poll_attempts: int = 0
    poll_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """Give-up horizon for a task that never finishes."""
    fingerprint: str = Field(default="", max_length=64)
    """Hash of the last *listing* payload: an unchanged item makes the upsert a no-op."""
    sidecar_due: bool = False
    raw: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    first_seen_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    stream: str | None = Field(default=None, max_length=128)
    """The history stream that last listed it (None: known only by id, e.g. tracked)."""
    listed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """When a walk last saw it in the listing (full walks write it for every item)."""
    gone_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """A complete full walk no longer found it: deleted or expired at the provider."""


class Asset(SQLModel, table=True):
    """One file of a generation and where it is in the archive pipeline."""

    __tablename__ = "asset"
    model_config = _table_config()
    __table_args__ = (
        sa.UniqueConstraint("generation_id", "url_key", name="uq_asset_url"),
        sa.Index(
            "ix_asset_lease",
            "expires_at",
            "created_at",
            postgresql_where=sa.text("state = 'pending'"),
            sqlite_where=sa.text("state = 'pending'"),
        ),
        sa.Index("ix_asset_account_state", "account", "state"),
        sa.Index(
            "ix_asset_lease_owner",
            "lease_owner",
            postgresql_where=sa.text("lease_owner IS NOT NULL"),
            sqlite_where=sa.text("lease_owner IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    generation_id: int = Field(foreign_key="generation.id", index=True, ondelete="CASCADE")
    provider: str = Field(max_length=32)
    account: str = Field(max_length=64)
    url_key: str = Field(max_length=64)
    """sha256 of the URL without its signature parameters: one file, however often re-signed."""
    source_url: str = Field(sa_type=sa.Text)
    role: str = Field(max_length=16)
    kind: str = Field(max_length=16)
    position: int
    expected_size: int | None = Field(default=None, sa_type=sa.BigInteger)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    expires_source: str | None = Field(default=None, max_length=16)
    """Where the deadline comes from (:class:`genvault.records.DeadlineSource`); None
    for files recorded before genvault kept it."""
    created_at: datetime = Field(sa_type=UTCDateTime)
    """The generation's creation time: the tie-breaker after the deadline."""
    state: str = Field(max_length=16)
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, sa_type=sa.Text)
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    url_refreshed: bool = False
    """The URL was re-read from the provider once after a 403/404/410."""
    size: int | None = Field(default=None, sa_type=sa.BigInteger)
    sha256: str | None = Field(default=None, max_length=64)
    content_type: str | None = Field(default=None, max_length=128)
    storage_key: str | None = Field(default=None, sa_type=sa.Text)
    archived_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class SyncCursor(SQLModel, table=True):
    """Incremental-sync state of one history stream of one account.

    ``high_water`` advances only when a walk completes; ``scan_position`` and
    ``scan_high_water`` record an unfinished walk and are written in the same
    transaction as the page they cover, so a crash resumes without gaps.
    """

    __tablename__ = "sync_cursor"
    model_config = _table_config()
    __table_args__ = (sa.UniqueConstraint("account", "stream", name="uq_cursor_stream"),)

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=32)
    account: str = Field(max_length=64)
    stream: str = Field(max_length=128)
    high_water: datetime | None = Field(default=None, sa_type=UTCDateTime)
    scan_position: int | None = None
    scan_high_water: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_full_scan_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_run_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_success_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, sa_type=sa.Text)
    items_seen: int = Field(default=0, sa_type=sa.BigInteger)
    walk_full: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    """The walk in progress is a full (reconciliation) walk: no early stop."""
    walk_started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """When the walk in progress started: items not listed since then are gone."""
    walk_floor: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """The walk's lower bound by creation time (``backfill_days``, ``--since``)."""
    last_full_walk_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """When the last complete full walk ended (the reconciliation's age)."""
    last_walk_complete: bool | None = None
    """Whether the last walk that ended reached its end with every check passed."""
    incomplete_reason: str | None = Field(default=None, sa_type=sa.Text)
    """Why the last walk ended incomplete (a drift not repaired, a repeated page, ...)."""
    listed: int | None = None
    """Items the last complete full walk listed."""
    order_seen: str | None = Field(default=None, max_length=16)
    """The listing's order as observed: newest_first, oldest_first or unsorted."""
    page_size_seen: int | None = None
    """The server's real page size when it caps the one asked for."""


class ProviderHealth(SQLModel, table=True):
    """The circuit breaker and request budget of one account, as last persisted.

    Written by the sync and poll jobs (never by archive workers) when the state
    changed, read at start so a cron run respects a circuit a previous run opened,
    and by ``genvault status`` (a separate process). ``last_error`` is a short,
    scrubbed summary: no URLs, no secrets.
    """

    __tablename__ = "provider_health"
    model_config = _table_config()

    account: str = Field(primary_key=True, max_length=64)
    provider: str = Field(max_length=32)
    circuit: str = Field(max_length=16)
    """closed, open or half_open (:class:`genvault.net.throttle.CircuitState`)."""
    consecutive_failures: int = 0
    opened_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    retry_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """When an open circuit lets its next trial call through."""
    last_error: str | None = Field(default=None, max_length=300)
    budget_interval: float = 0.0
    """Seconds kept between two requests after 429s (0: no pacing)."""
    rate_limited_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    """A Retry-After too long to wait out: no request before this time."""
    updated_at: datetime = Field(sa_type=UTCDateTime)


class Notification(SQLModel, table=True):
    """What :mod:`genvault.notify` has said, so nothing is said twice.

    One row per event kind and subject (an asset id, ``account/stream``, an account,
    ``storage``, an archive key), written only after Apprise reported the message
    delivered. In the database, not in memory, so a cron run does not repeat what the
    previous run said, and replicas sharing the database do not repeat each other.
    """

    __tablename__ = "notification"
    model_config = _table_config()

    kind: str = Field(primary_key=True, max_length=16)
    subject: str = Field(primary_key=True, max_length=512)
    sent_at: datetime = Field(sa_type=UTCDateTime)
