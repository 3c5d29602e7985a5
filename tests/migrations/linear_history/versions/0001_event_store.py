"""The event store: events (immutable) and snapshots.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Same key as eventsource.store.engine.COMMIT_ORDER_LOCK, as a signed bigint.
_LOCK_KEY = 0x6576656E74730001


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    # SQLite: INTEGER PRIMARY KEY is the rowid, max + 1 under the write lock.
    position = (
        sa.Column("global_position", sa.Integer(), primary_key=True, autoincrement=True)
        if sqlite
        else sa.Column("global_position", sa.BigInteger(), sa.Identity(), primary_key=True)
    )
    op.create_table(
        "events",
        position,
        sa.Column("stream_id", sa.String(320), nullable=False),
        sa.Column("aggregate_id", sa.String(200), nullable=False),
        sa.Column("aggregate_type", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("metadata", sa.Text(), nullable=False),
        sa.UniqueConstraint("stream_id", "version", name="events_stream_version_key"),
        sa.UniqueConstraint("event_id", name="events_event_id_key"),
        sa.CheckConstraint("version >= 1", name="events_version_positive"),
    )
    op.create_index("events_type_position_idx", "events", ["aggregate_type", "global_position"])
    op.create_table(
        "snapshots",
        sa.Column("stream_id", sa.String(320), primary_key=True),
        sa.Column("aggregate_type", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
    )
    if sqlite:
        _sqlite_triggers()
    else:
        _postgresql_triggers()


def _sqlite_triggers() -> None:
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"""
            CREATE TRIGGER events_immutable_{action.lower()} BEFORE {action} ON events
            BEGIN
                SELECT RAISE(ABORT, 'events are immutable: {action} is not allowed');
            END
            """
        )


def _postgresql_triggers() -> None:
    signed = _LOCK_KEY - (1 << 64) if _LOCK_KEY >= (1 << 63) else _LOCK_KEY
    op.execute(
        """
        CREATE FUNCTION eventsource_events_immutable() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'events are immutable: % is not allowed', TG_OP
                USING ERRCODE = 'restrict_violation';
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER events_immutable BEFORE UPDATE OR DELETE ON events
        FOR EACH ROW EXECUTE FUNCTION eventsource_events_immutable()
        """
    )
    op.execute(
        """
        CREATE TRIGGER events_immutable_truncate BEFORE TRUNCATE ON events
        FOR EACH STATEMENT EXECUTE FUNCTION eventsource_events_immutable()
        """
    )
    # Positions must follow commit order: whoever inserts takes the appenders'
    # lock before the statement draws its first position from the sequence.
    op.execute(
        f"""
        CREATE FUNCTION eventsource_events_commit_order() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_advisory_xact_lock({signed});
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER events_commit_order BEFORE INSERT ON events
        FOR EACH STATEMENT EXECUTE FUNCTION eventsource_events_commit_order()
        """
    )


def downgrade() -> None:
    op.drop_table("snapshots")
    op.drop_index("events_type_position_idx", table_name="events")
    op.drop_table("events")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS eventsource_events_immutable()")
        op.execute("DROP FUNCTION IF EXISTS eventsource_events_commit_order()")
