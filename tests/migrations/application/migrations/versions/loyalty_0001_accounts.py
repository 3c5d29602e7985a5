"""Loyalty accounts, and a view of each customer's events in eventsource's table.

Revision ID: loyalty_0001
Revises:
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "loyalty_0001"
down_revision = None
branch_labels = ("loyalty",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loyalty_accounts",
        sa.Column("customer_id", sa.String(100), primary_key=True),
        sa.Column("points", sa.Integer(), nullable=False),
    )
    # eventsource's `events` exists already: the environment upgraded it first.
    op.execute(
        """
        CREATE VIEW loyalty_customer_events AS
        SELECT aggregate_id AS customer_id, count(*) AS events
        FROM events WHERE aggregate_type = 'lo_customer'
        GROUP BY aggregate_id
        """
    )


def downgrade() -> None:
    op.execute("DROP VIEW loyalty_customer_events")
    op.drop_table("loyalty_accounts")
