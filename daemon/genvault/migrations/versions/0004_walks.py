"""walks: completeness per history stream, and leases tied to live workers

``generation`` learns which history stream listed it (``stream``), when a walk
last saw it there (``listed_at``) and when a complete full walk found it gone
(``gone_at``: deleted or expired at the provider). ``sync_cursor`` keeps the walk
in progress (``walk_full``, ``walk_started_at``, ``walk_floor``) and the outcome of
the last one (``last_walk_complete``, ``incomplete_reason``, ``last_full_walk_at``,
``listed``, ``order_seen``, ``page_size_seen``). ``asset`` gets an index on
``lease_owner`` so the leases of a dead worker are found without a scan.

Every change is an ``ADD COLUMN`` or a ``CREATE INDEX``: no table is rebuilt, so the
SQLite search triggers of 0003 stay as they are.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import genvault.models

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UTC = genvault.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.add_column("generation", sa.Column("stream", sa.String(length=128), nullable=True))
    op.add_column("generation", sa.Column("listed_at", _UTC, nullable=True))
    op.add_column("generation", sa.Column("gone_at", _UTC, nullable=True))
    op.create_index("ix_generation_stream", "generation", ["account", "stream"])

    op.add_column(
        "sync_cursor",
        sa.Column("walk_full", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("sync_cursor", sa.Column("walk_started_at", _UTC, nullable=True))
    op.add_column("sync_cursor", sa.Column("walk_floor", _UTC, nullable=True))
    op.add_column("sync_cursor", sa.Column("last_full_walk_at", _UTC, nullable=True))
    op.add_column("sync_cursor", sa.Column("last_walk_complete", sa.Boolean(), nullable=True))
    op.add_column("sync_cursor", sa.Column("incomplete_reason", sa.Text(), nullable=True))
    op.add_column("sync_cursor", sa.Column("listed", sa.Integer(), nullable=True))
    op.add_column("sync_cursor", sa.Column("order_seen", sa.String(length=16), nullable=True))
    op.add_column("sync_cursor", sa.Column("page_size_seen", sa.Integer(), nullable=True))

    op.create_index(
        "ix_asset_lease_owner",
        "asset",
        ["lease_owner"],
        postgresql_where=sa.text("lease_owner IS NOT NULL"),
        sqlite_where=sa.text("lease_owner IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_asset_lease_owner", table_name="asset")
    for col in (
        "page_size_seen",
        "order_seen",
        "listed",
        "incomplete_reason",
        "last_walk_complete",
        "last_full_walk_at",
        "walk_floor",
        "walk_started_at",
        "walk_full",
    ):
        op.drop_column("sync_cursor", col)
    op.drop_index("ix_generation_stream", table_name="generation")
    for col in ("gone_at", "listed_at", "stream"):
        op.drop_column("generation", col)
