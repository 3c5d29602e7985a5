"""A store's identity, and the heartbeats of the relays that publish it.

- `store_identity`: one row, a random id made when the store's tables are.
  The relay stamps it on every message and refuses topics that another
  store's relay wrote, so a relay pointed at the wrong database (a typo, a
  default) can neither fence the live one nor mix two stores' positions.
- `relay_heartbeats`: each running relay's identity, position and heartbeat.

Revision ID: store_0002
Revises: store_0001
Create Date: 2026-12-04
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "store_0002"
down_revision = "store_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    identity = op.create_table(
        "store_identity",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.bulk_insert(identity, [{"id": str(uuid.uuid4()), "created_at": datetime.now(UTC)}])
    op.create_table(
        "relay_heartbeats",
        sa.Column("member", sa.String(200), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("transactional_id", sa.String(250), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("relayed", sa.BigInteger(), nullable=False),
        sa.Column("retrying_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retry_reason", sa.Text(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("relay_heartbeats")
    op.drop_table("store_identity")
