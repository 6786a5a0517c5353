"""notification: what genvault notify has said; where each deadline comes from

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import genvault.models

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notification",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=512), nullable=False),
        sa.Column("sent_at", genvault.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "subject"),
    )
    for table in ("generation", "asset"):
        op.add_column(table, sa.Column("expires_source", sa.String(length=16), nullable=True))


def downgrade() -> None:
    for table in ("asset", "generation"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("expires_source")
    op.drop_table("notification")
