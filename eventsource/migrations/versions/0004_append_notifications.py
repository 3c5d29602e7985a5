"""PostgreSQL: a notification on channel `eventsource_appended` when events commit.

A relay (or an embedded log) waiting for new events LISTENs on it instead of
reading the store on an interval. NOTIFY is delivered at commit, so a
listener never hears of events it cannot read yet. SQLite needs nothing:
its readers ask `PRAGMA data_version`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION eventsource_events_appended() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('eventsource_appended', '');
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER events_appended AFTER INSERT ON events
        FOR EACH STATEMENT EXECUTE FUNCTION eventsource_events_appended()
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS events_appended ON events")
    op.execute("DROP FUNCTION IF EXISTS eventsource_events_appended()")
