"""The framework's own tables beside the views: positions and projection state.

Created by the `runtime` branch of the Alembic migrations in `migrations/`.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from eventsource.store.engine import take_named_lock

metadata = MetaData()

positions = Table(
    "projection_positions",
    metadata,
    Column("projection", String(200), primary_key=True),
    Column("topic", String(250), primary_key=True),
    Column("partition", Integer, primary_key=True, autoincrement=False),
    # The next offset to read, and the last global position applied from it.
    Column("offset", BigInteger, nullable=False),
    Column("last_position", BigInteger, nullable=False),
    # Bumped by every write: a worker's update must name the revision it read,
    # so a worker that lost the partition (a zombie) cannot commit over its successor.
    Column("revision", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

projections = Table(
    "projections",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("last_error", Text, nullable=True),
    Column("last_error_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("projection", String(200), nullable=False, index=True),
    Column("topic", String(250), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    # The event as it came off the log, so that it can be replayed once fixed
    # (NULL columns when the message was not a decodable event at all).
    Column("stream_id", String(320), nullable=True),
    Column("position", BigInteger, nullable=True),
    Column("event_type", String(200), nullable=True),
    Column("event_id", String(36), nullable=True),
    Column("record", Text, nullable=True),
    Column("error", Text, nullable=False),
    # parked: its handler failed; blocked: waits behind a parked event of its
    # stream; stopped: the worker stopped on it (on_failure="stop"); replayed.
    Column("status", String(20), nullable=False),
    Column("parked_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    # Why and by whom it was skipped or resolved.
    Column("resolution", Text, nullable=True),
    Column("resolved_by", String(200), nullable=True),
)

deadlines = Table(
    "deadlines",
    metadata,
    Column("owner", String(200), primary_key=True),
    Column("name", String(100), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("due_at", DateTime(timezone=True), nullable=False, index=True),
    Column("payload", Text, nullable=False),
    # The event that scheduled it: the deadline's command is caused by it.
    Column("cause_id", String(36), nullable=True),
    Column("correlation_id", String(36), nullable=True),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("done_at", DateTime(timezone=True), nullable=True),
    # Bumped by every schedule of the (name, key): a claim names the revision
    # it read, so a deadline moved or cancelled since is never run as it was.
    Column("revision", BigInteger, nullable=False, server_default="1"),
)

members = Table(
    "projection_members",
    metadata,
    Column("projection", String(200), primary_key=True),
    Column("member", String(200), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
    Column("partitions", Text, nullable=False),
    Column("applied", BigInteger, nullable=False),
    Column("retrying_since", DateTime(timezone=True), nullable=True),
    Column("retry_reason", Text, nullable=True),
)


def create_missing(conn: Connection, tables: Iterable[Table]) -> None:
    """Create whichever of `tables` do not exist yet, safely against other processes.

    PostgreSQL's `CREATE TABLE` checks for an existing table before it takes
    its catalogue locks, so two workers starting together can both decide to
    create one and the slower fails on a unique index of `pg_type`. A lock
    per table name, held to the end of the transaction, makes the second
    wait and then find the table.
    """
    for table in tables:
        take_named_lock(conn, f"eventsource.create:{table.name}")
        table.create(conn, checkfirst=True)
