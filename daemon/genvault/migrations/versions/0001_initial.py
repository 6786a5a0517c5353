"""initial schema: generation, asset, sync_cursor

Revision ID: 0001
Revises:
Create Date: 2026-11-20
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import genvault.models

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "generation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=512), nullable=False),
        sa.Column("kind", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("provider_status", sa.String(length=64), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=True),
        sa.Column("model", sa.String(length=256), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created_at", genvault.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("completed_at", genvault.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("provider_updated_at", genvault.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("expires_at", genvault.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("next_poll_at", genvault.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("poll_attempts", sa.Integer(), nullable=False),
        sa.Column("poll_until", genvault.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("sidecar_due", sa.Boolean(), nullable=False),
        sa.Column(
            "raw",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("first_seen_at", genvault.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", genvault.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("provider", "account", "external_id", name="uq_generation_external"),
    )
    with op.batch_alter_table("generation", schema=None) as batch_op:
        batch_op.create_index("ix_generation_account_status", ["account", "status"], unique=False)
        batch_op.create_index(
            "ix_generation_poll",
            ["next_poll_at"],
            unique=False,
            postgresql_where=sa.text("next_poll_at IS NOT NULL"),
            sqlite_where=sa.text("next_poll_at IS NOT NULL"),
        )
        batch_op.create_index(
            "ix_generation_sidecar",
            ["id"],
            unique=False,
            postgresql_where=sa.text("sidecar_due"),
            sqlite_where=sa.text("sidecar_due"),
        )

    op.create_table(
        "sync_cursor",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=128), nullable=False),
        sa.Column("high_water", genvault.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("scan_position", sa.Integer(), nullable=True),
        sa.Column("scan_high_water", genvault.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_full_scan_at", genvault.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_run_at", genvault.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", genvault.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("items_seen", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account", "stream", name="uq_cursor_stream"),
    )
    op.create_table(
        "asset",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("generation_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("url_key", sa.String(length=64), nullable=False),
        sa.Column("source_url", sa.Text(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("expected_size", sa.BigInteger(), nullable=True),
        sa.Column("expires_at", genvault.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", genvault.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", genvault.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", genvault.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("url_refreshed", sa.Boolean(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("content_type", sa.String(length=128), nullable=True),
        sa.Column("storage_key", sa.Text(), nullable=True),
        sa.Column("archived_at", genvault.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", genvault.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["generation_id"], ["generation.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("generation_id", "url_key", name="uq_asset_url"),
    )
    with op.batch_alter_table("asset", schema=None) as batch_op:
        batch_op.create_index("ix_asset_account_state", ["account", "state"], unique=False)
        batch_op.create_index(batch_op.f("ix_asset_generation_id"), ["generation_id"], unique=False)
        batch_op.create_index(
            "ix_asset_lease",
            ["expires_at", "created_at"],
            unique=False,
            postgresql_where=sa.text("state = 'pending'"),
            sqlite_where=sa.text("state = 'pending'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("asset", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_asset_lease",
            postgresql_where=sa.text("state = 'pending'"),
            sqlite_where=sa.text("state = 'pending'"),
        )
        batch_op.drop_index(batch_op.f("ix_asset_generation_id"))
        batch_op.drop_index("ix_asset_account_state")

    op.drop_table("asset")
    op.drop_table("sync_cursor")
    with op.batch_alter_table("generation", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_generation_sidecar",
            postgresql_where=sa.text("sidecar_due"),
            sqlite_where=sa.text("sidecar_due"),
        )
        batch_op.drop_index(
            "ix_generation_poll",
            postgresql_where=sa.text("next_poll_at IS NOT NULL"),
            sqlite_where=sa.text("next_poll_at IS NOT NULL"),
        )
        batch_op.drop_index("ix_generation_account_status")

    op.drop_table("generation")
