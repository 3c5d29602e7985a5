"""Dead letters and deadlines.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.create_table(
        "dead_letters",
        sa.Column(
            "id", sa.Integer() if sqlite else sa.BigInteger(), primary_key=True, autoincrement=True
        ),
        sa.Column("projection", sa.String(200), nullable=False),
        sa.Column("topic", sa.String(250), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("stream_id", sa.String(320), nullable=True),
        sa.Column("position", sa.BigInteger(), nullable=True),
        sa.Column("event_type", sa.String(200), nullable=True),
        sa.Column("event_id", sa.String(36), nullable=True),
        sa.Column("record", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("parked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_dead_letters_projection", "dead_letters", ["projection"])
    op.create_table(
        "deadlines",
        sa.Column("owner", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("cause_id", sa.String(36), nullable=True),
        sa.Column("correlation_id", sa.String(36), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_deadlines_due_at", "deadlines", ["due_at"])


def downgrade() -> None:
    op.drop_table("deadlines")
    op.drop_table("dead_letters")
