"""The framework's tables, as SQLAlchemy Core objects for queries.

The tables themselves are created by the `store` branch of the Alembic
migrations in `migrations/`; these definitions must match them (a test checks).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
)

metadata = MetaData()

# SQLite only makes INTEGER PRIMARY KEY an alias of the rowid.
Position = BigInteger().with_variant(Integer(), "sqlite")

events = Table(
    "events",
    metadata,
    Column("global_position", Position, primary_key=True, autoincrement=True),
    Column("stream_id", String(320), nullable=False),
    Column("aggregate_id", String(200), nullable=False),
    Column("aggregate_type", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("event_id", Uuid(), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("payload", Text, nullable=False),
    Column("metadata", Text, nullable=False),
    UniqueConstraint("stream_id", "version", name="events_stream_version_key"),
    UniqueConstraint("event_id", name="events_event_id_key"),
    Index("events_type_position_idx", "aggregate_type", "global_position"),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("stream_id", String(320), primary_key=True),
    Column("aggregate_type", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("state", Text, nullable=False),
    Column("taken_at", DateTime(timezone=True), nullable=False),
)

EVENT_COLUMNS = (
    events.c.global_position,
    events.c.stream_id,
    events.c.aggregate_id,
    events.c.aggregate_type,
    events.c.version,
    events.c.event_type,
    events.c.schema_version,
    events.c.event_id,
    events.c.occurred_at,
    events.c.payload,
    events.c.metadata,
)

store_identity = Table(
    "store_identity",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

relay_heartbeats = Table(
    "relay_heartbeats",
    metadata,
    Column("member", String(200), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("transactional_id", String(250), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("relayed", BigInteger, nullable=False),
    Column("retrying_since", DateTime(timezone=True), nullable=True),
    Column("retry_reason", Text, nullable=True),
)

# A subject's key for sealing personal data (see `eventsource.events.personal`).
personal_data_keys = Table(
    "personal_data_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("subject", String(200), nullable=False),
    Column("key", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("subject", name="personal_data_keys_subject_key"),
)
