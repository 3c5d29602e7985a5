"""Deadlines get a revision, dead letters a resolution, workers a membership row.

- `deadlines.revision`: bumped by every schedule of a (name, key), so that a
  deadline is claimed only as it was read (compare-and-set): one moved or
  cancelled after it was read is never run with its old payload.
- `dead_letters.resolution`, `resolved_by`: why and by whom a dead letter was
  skipped or resolved.
- `projection_members`: each running worker's identity, the partitions it
  holds and its heartbeat, so that status tells a running worker from one
  that died.

Revision ID: runtime_0003
Revises: runtime_0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "runtime_0003"
down_revision = "runtime_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deadlines") as table:
        table.add_column(sa.Column("revision", sa.BigInteger(), nullable=False, server_default="1"))
    with op.batch_alter_table("dead_letters") as table:
        table.add_column(sa.Column("resolution", sa.Text(), nullable=True))
        table.add_column(sa.Column("resolved_by", sa.String(200), nullable=True))
    op.create_table(
        "projection_members",
        sa.Column("projection", sa.String(200), primary_key=True),
        sa.Column("member", sa.String(200), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("partitions", sa.Text(), nullable=False),
        sa.Column("applied", sa.BigInteger(), nullable=False),
        sa.Column("retrying_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retry_reason", sa.Text(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("projection_members")
    with op.batch_alter_table("dead_letters") as table:
        table.drop_column("resolved_by")
        table.drop_column("resolution")
    with op.batch_alter_table("deadlines") as table:
        table.drop_column("revision")
