"""The tables (SQLAlchemy Core): generation, asset, sync_cursor, provider_health, notification.

Only :mod:`genvault.store` queries them. Every datetime column is UTC-aware
(:class:`UTCDateTime`): SQLite returns naive values, so the type re-attaches
UTC on the way out and refuses naive values on the way in, which keeps every
comparison in the code honest on both databases.

Indexes exist for the queries that run per item: the pending-asset lease
(``ix_asset_lease``), the poll queue (``ix_generation_poll``), sidecars due, and
the per-account counts behind ``status``.

Plain :class:`sqlalchemy.Table` objects on :data:`metadata`: the store only ever
speaks Core (``select(A)``, ``A.c.state``), so no ORM is imported. (They were
SQLModel classes, used only through ``__table__``; ``sqlmodel`` and
``sqlalchemy.orm`` cost every start ~0.12 CPU-s of imports. Columns, types,
defaults, constraints and indexes are the very ones those classes declared: the
DDL on SQLite and PostgreSQL is identical, and ``tests/integration/test_store.py``
checks them against the migrations.) Strings are ``String(n)``, which is what
SQLModel's ``AutoString(n)`` renders on both databases.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB


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


metadata = sa.MetaData()
"""Every table genvault declares (Alembic's ``target_metadata``). Full-text search
tables are made by migration 0003 only (see :mod:`genvault.store.queries.search`)."""


GENERATION = sa.Table(
    "generation",
    metadata,
    # One generation (task) at a provider, with its last known payload.
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("account", sa.String(64), nullable=False),
    sa.Column("external_id", sa.String(512), nullable=False),
    sa.Column("kind", sa.String(128), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("provider_status", sa.String(64), nullable=False, default=""),
    sa.Column("prompt", sa.Text(), nullable=True),
    sa.Column("model", sa.String(256), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    # How we learned of it: history, track (CLI/intake), webhook.
    sa.Column("source", sa.String(16), nullable=False, default="history"),
    sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
    sa.Column("completed_at", UTCDateTime(timezone=True), nullable=True),
    sa.Column("provider_updated_at", UTCDateTime(timezone=True), nullable=True),
    sa.Column("expires_at", UTCDateTime(timezone=True), nullable=True),
    # Where ``expires_at`` comes from (:class:`genvault.records.DeadlineSource`).
    sa.Column("expires_source", sa.String(16), nullable=True),
    sa.Column("next_poll_at", UTCDateTime(timezone=True), nullable=True),
    sa.Column("poll_attempts", sa.Integer(), nullable=False, default=0),
    # Give-up horizon for a task that never finishes.
    sa.Column("poll_until", UTCDateTime(timezone=True), nullable=True),
    # Hash of the last *listing* payload: an unchanged item makes the upsert a no-op.
    sa.Column("fingerprint", sa.String(64), nullable=False, default=""),
    sa.Column("sidecar_due", sa.Boolean(), nullable=False, default=False),
    sa.Column("raw", JSONType, nullable=False, default=dict),
    sa.Column("first_seen_at", UTCDateTime(timezone=True), nullable=False),
    sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
    # The history stream that last listed it (None: known only by id, e.g. tracked).
    sa.Column("stream", sa.String(128), nullable=True),
    # When a walk last saw it in the listing (full walks write it for every item).
    sa.Column("listed_at", UTCDateTime(timezone=True), nullable=True),
    # A complete full walk no longer found it: deleted or expired at the provider.
    sa.Column("gone_at", UTCDateTime(timezone=True), nullable=True),
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


ASSET = sa.Table(
    "asset",
    metadata,
    # One file of a generation and where it is in the archive pipeline.
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column(
        "generation_id",
        sa.Integer(),
        sa.ForeignKey("generation.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("account", sa.String(64), nullable=False),
    # sha256 of the URL without its signature parameters: one file, however often re-signed.
    sa.Column("url_key", sa.String(64), nullable=False),
    sa.Column("source_url", sa.Text(), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("position", sa.Integer(), nullable=False),
    sa.Column("expected_size", sa.BigInteger(), nullable=True),
    sa.Column("expires_at", UTCDateTime(timezone=True), nullable=False),
    # Where the deadline comes from (:class:`genvault.records.DeadlineSource`); None
    # for files recorded before genvault kept it.
    sa.Column("expires_source", sa.String(16), nullable=True),
    # The generation's creation time: the tie-breaker after the deadline.
    sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, default=0),
    sa.Column("next_attempt_at", UTCDateTime(timezone=True), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_until", UTCDateTime(timezone=True), nullable=True),
    # The URL was re-read from the provider once after a 403/404/410.
    sa.Column("url_refreshed", sa.Boolean(), nullable=False, default=False),
    sa.Column("size", sa.BigInteger(), nullable=True),
    sa.Column("sha256", sa.String(64), nullable=True),
    sa.Column("content_type", sa.String(128), nullable=True),
    sa.Column("storage_key", sa.Text(), nullable=True),
    sa.Column("archived_at", UTCDateTime(timezone=True), nullable=True),
    sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
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


SYNC_CURSOR = sa.Table(
    "sync_cursor",
    metadata,
    # Incremental-sync state of one history stream of one account. ``high_water``
    # advances only when a walk completes; ``scan_position`` and ``scan_high_water``
    # record an unfinished walk and are written in the same transaction as the page
    # they cover, so a crash resumes without gaps.
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("account", sa.String(64), nullable=False),
    sa.Column("stream", sa.String(128), nullable=False),
    sa.Column("high_water", UTCDateTime(timezone=True), nullable=True),
    sa.Column("scan_position", sa.Integer(), nullable=True),
    sa.Column("scan_high_water", UTCDateTime(timezone=True), nullable=True),
    sa.Column("last_full_scan_at", UTCDateTime(timezone=True), nullable=True),
    sa.Column("last_run_at", UTCDateTime(timezone=True), nullable=True),
    sa.Column("last_success_at", UTCDateTime(timezone=True), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("items_seen", sa.BigInteger(), nullable=False, default=0),
    # The walk in progress is a full (reconciliation) walk: no early stop.
    sa.Column("walk_full", sa.Boolean(), nullable=False, default=False, server_default=sa.false()),
    # When the walk in progress started: items not listed since then are gone.
    sa.Column("walk_started_at", UTCDateTime(timezone=True), nullable=True),
    # The walk's lower bound by creation time (``backfill_days``, ``--since``).
    sa.Column("walk_floor", UTCDateTime(timezone=True), nullable=True),
    # When the last complete full walk ended (the reconciliation's age).
    sa.Column("last_full_walk_at", UTCDateTime(timezone=True), nullable=True),
    # Whether the last walk that ended reached its end with every check passed.
    sa.Column("last_walk_complete", sa.Boolean(), nullable=True),
    # Why the last walk ended incomplete (a drift not repaired, a repeated page, ...).
    sa.Column("incomplete_reason", sa.Text(), nullable=True),
    # Items the last complete full walk listed.
    sa.Column("listed", sa.Integer(), nullable=True),
    # The listing's order as observed: newest_first, oldest_first or unsorted.
    sa.Column("order_seen", sa.String(16), nullable=True),
    # The server's real page size when it caps the one asked for.
    sa.Column("page_size_seen", sa.Integer(), nullable=True),
    sa.UniqueConstraint("account", "stream", name="uq_cursor_stream"),
)


PROVIDER_HEALTH = sa.Table(
    "provider_health",
    metadata,
    # The circuit breaker and request budget of one account, as last persisted.
    # Written by the sync and poll jobs (never by archive workers) when the state
    # changed, read at start so a cron run respects a circuit a previous run opened,
    # and by ``genvault status`` (a separate process). ``last_error`` is a short,
    # scrubbed summary: no URLs, no secrets.
    sa.Column("account", sa.String(64), primary_key=True),
    sa.Column("provider", sa.String(32), nullable=False),
    # closed, open or half_open (:class:`genvault.net.throttle.CircuitState`).
    sa.Column("circuit", sa.String(16), nullable=False),
    sa.Column("consecutive_failures", sa.Integer(), nullable=False, default=0),
    sa.Column("opened_at", UTCDateTime(timezone=True), nullable=True),
    # When an open circuit lets its next trial call through.
    sa.Column("retry_at", UTCDateTime(timezone=True), nullable=True),
    sa.Column("last_error", sa.String(300), nullable=True),
    # Seconds kept between two requests after 429s (0: no pacing).
    sa.Column("budget_interval", sa.Float(), nullable=False, default=0.0),
    # A Retry-After too long to wait out: no request before this time.
    sa.Column("rate_limited_until", UTCDateTime(timezone=True), nullable=True),
    sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
)


NOTIFICATION = sa.Table(
    "notification",
    metadata,
    # What :mod:`genvault.notify` has said, so nothing is said twice. One row per
    # event kind and subject (an asset id, ``account/stream``, an account,
    # ``storage``, an archive key), written only after Apprise reported the message
    # delivered. In the database, not in memory, so a cron run does not repeat what
    # the previous run said, and replicas sharing the database do not repeat each other.
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("subject", sa.String(512), primary_key=True),
    sa.Column("sent_at", UTCDateTime(timezone=True), nullable=False),
)
