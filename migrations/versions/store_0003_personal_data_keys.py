"""The keys that seal personal data, one per subject.

- `personal_data_keys`: a subject's current key (AES-256) and its id, which
  every value sealed with it names. `EventStore.forget` deletes the row, and
  with it the only way to read those values. A subject has at most one key
  at a time; a subject forgotten and seen again gets a new one.

Revision ID: store_0003
Revises: store_0002
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "store_0003"
down_revision = "store_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "personal_data_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("subject", name="personal_data_keys_subject_key"),
    )


def downgrade() -> None:
    op.drop_table("personal_data_keys")
