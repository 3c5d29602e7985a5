"""The store's statements on the driver's connection: insert a batch, read and load
streams, snapshots. `EventStore` and `Repository` run them (see `driver.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlalchemy import Insert, Select, bindparam, select
from sqlalchemy.dialects.postgresql import dml as pg_dml
from sqlalchemy.dialects.sqlite import dml as sqlite_dml

from eventsource.events.records import StoredEvent, stream_id_for
from eventsource.events.uuids import uuid_from_hex
from eventsource.store import schema
from eventsource.store.driver import DriverConnection, compiled

if TYPE_CHECKING:
    pass


# -- inserting a batch ---------------------------------------------------------------
#
# A batch is inserted so that its positions ascend in the order of the records
# (a stream's versions appear in the log in order) and the positions come back
# in that order. SQLAlchemy's `returning(sort_by_parameter_order=True)` does
# both, but slowly: on SQLite it runs one INSERT ... RETURNING per row, in
# Python; on PostgreSQL it sends one statement with ten bind parameters per
# row, which psycopg parses anew on every call.

_ARRAY_TYPES = {
    "stream_id": "varchar",
    "aggregate_id": "varchar",
    "aggregate_type": "varchar",
    "version": "integer",
    "event_type": "varchar",
    "schema_version": "integer",
    "event_id": "uuid",
    "occurred_at": "timestamptz",
    "payload": "text",
    "metadata": "text",
}
_COLUMNS = ", ".join(_ARRAY_TYPES)
_COLUMN_NAMES = tuple(_ARRAY_TYPES)
# psycopg's binary format (`%(name)b`) dumps a list in C; its text format
# escapes every string of an array in Python, ten times slower.
_INSERT_UNNEST = (
    f"INSERT INTO events ({_COLUMNS}) SELECT {_COLUMNS} FROM unnest("
    + ", ".join(f"%({name})b::{kind}[]" for name, kind in _ARRAY_TYPES.items())
    + f") WITH ORDINALITY AS batch({_COLUMNS}, n) ORDER BY n RETURNING global_position"
)


def _insert_statement(_dialect: str, *, returning: bool = True) -> Insert:
    statement = schema.events.insert().values({name: bindparam(name) for name in _COLUMN_NAMES})
    return statement.returning(schema.events.c.global_position) if returning else statement


def _insert_rows_statement(dialect: str) -> Insert:
    return _insert_statement(dialect, returning=False)


def _read_stream_statement(_dialect: str) -> Select[Any]:
    return (
        select(*schema.EVENT_COLUMNS)
        .where(schema.events.c.stream_id == bindparam("stream_id"))
        .where(schema.events.c.version > bindparam("after_version"))
        .order_by(schema.events.c.version)
    )


_STREAM_COLUMNS = (
    schema.events.c.global_position,
    schema.events.c.version,
    schema.events.c.event_type,
    schema.events.c.schema_version,
    schema.events.c.event_id,
    schema.events.c.occurred_at,
    schema.events.c.payload,
    schema.events.c.metadata,
)


def _load_stream_statement(_dialect: str) -> Select[Any]:
    return (
        select(*_STREAM_COLUMNS)
        .where(schema.events.c.stream_id == bindparam("stream_id"))
        .where(schema.events.c.version > bindparam("after_version"))
        .order_by(schema.events.c.version)
    )


def _load_snapshot_statement(_dialect: str) -> Select[Any]:
    columns = schema.snapshots.c
    return select(columns.version, columns.fingerprint, columns.state).where(
        columns.stream_id == bindparam("stream_id")
    )


_SNAPSHOT_COLUMNS = ("stream_id", "aggregate_type", "version", "fingerprint", "state", "taken_at")


def _save_snapshot_statement(dialect: str) -> Insert:
    insert = sqlite_dml.insert if dialect == "sqlite" else pg_dml.insert
    statement = insert(schema.snapshots).values(
        {name: bindparam(name) for name in _SNAPSHOT_COLUMNS}
    )
    return statement.on_conflict_do_update(
        index_elements=[schema.snapshots.c.stream_id],
        set_={name: statement.excluded[name] for name in _SNAPSHOT_COLUMNS[1:]},
        where=schema.snapshots.c.version < statement.excluded.version,
    )


def read_stream_on(conn: DriverConnection, stream_id: str, after_version: int) -> list[StoredEvent]:
    """A stream's records above `after_version`, in order, in `conn`'s transaction."""
    statement = compiled(conn.dialect, "read_stream", _read_stream_statement)
    rows = conn.fetchall(statement, {"stream_id": stream_id, "after_version": after_version})
    return [_record(row) for row in rows]


def load_stream_on(
    conn: DriverConnection, aggregate_type: str, aggregate_id: str, after_version: int
) -> list[StoredEvent]:
    """One aggregate's records above `after_version`, in order, in `conn`'s transaction.

    What `read_stream_on` returns for the aggregate's stream, read for loading
    it: the stream id, aggregate id and type are the aggregate's own, not read
    back for every row, and each row becomes a record in this one loop.
    """
    stream_id = stream_id_for(aggregate_type, aggregate_id)
    statement = compiled(conn.dialect, "load_stream", _load_stream_statement)
    rows = conn.fetchall(statement, {"stream_id": stream_id, "after_version": after_version})
    records: list[StoredEvent] = []
    append = records.append
    for position, version, event_type, schema_version, raw_id, raw_time, payload, meta in rows:
        event_id = raw_id  # as in `_record`
        if not isinstance(raw_id, UUID):
            event_id = uuid_from_hex(raw_id) if len(raw_id) == 32 else UUID(raw_id)
        occurred_at = raw_time
        if isinstance(raw_time, str):
            occurred_at = datetime.fromisoformat(raw_time + "+00:00")
        elif raw_time.tzinfo is None:
            occurred_at = raw_time.replace(tzinfo=UTC)
        elif raw_time.tzinfo is not UTC:
            occurred_at = raw_time.astimezone(UTC)
        record = (
            position,
            stream_id,
            aggregate_id,
            aggregate_type,
            version,
            event_type,
            schema_version,
            event_id,
            occurred_at,
            payload,
            meta,
        )
        append(_new_tuple(StoredEvent, record))
    return records


def load_snapshot_on(conn: DriverConnection, stream_id: str) -> tuple[int, str, str] | None:
    """`(version, fingerprint, state)` of a stream's snapshot, in `conn`'s transaction."""
    statement = compiled(conn.dialect, "load_snapshot", _load_snapshot_statement)
    rows = conn.fetchall(statement, {"stream_id": stream_id})
    if not rows:
        return None
    version, fingerprint, state = rows[0]
    return int(version), str(fingerprint), str(state)


def save_snapshot_on(
    conn: DriverConnection,
    *,
    stream_id: str,
    aggregate_type: str,
    version: int,
    fingerprint: str,
    state: str,
) -> None:
    """Replace a stream's snapshot (unless a newer one is stored), in `conn`'s transaction."""
    taken_at = datetime.now(UTC)
    values = {
        "stream_id": stream_id,
        "aggregate_type": aggregate_type,
        "version": version,
        "fingerprint": fingerprint,
        "state": state,
        "taken_at": sqlite_datetime(taken_at) if conn.is_sqlite else taken_at,
    }
    conn.execute(compiled(conn.dialect, "save_snapshot", _save_snapshot_statement), values)


# -- inserting a batch ---------------------------------------------------------------
#
# A batch is inserted so that its positions ascend in the order of the records
# (a stream's versions appear in the log in order) and the positions come back
# in that order. SQLAlchemy's `returning(sort_by_parameter_order=True)` does
# both, but slowly: on SQLite it runs one INSERT ... RETURNING per row, in
# Python; on PostgreSQL it sends one statement with ten bind parameters per
# row, which psycopg parses anew on every call.


def insert_on(conn: DriverConnection, records: Sequence[StoredEvent]) -> list[int]:
    """Insert `records` in order, in `conn`'s transaction; their global positions, in order."""
    if conn.is_sqlite:
        return _insert_sqlite(conn, records)
    if len(records) == 1:
        statement = compiled(conn.dialect, "insert_event", _insert_statement)
        return [int(conn.fetchall(statement, _postgresql_row(records[0]))[0][0])]
    return _insert_postgresql(conn, records)


def _insert_postgresql(conn: DriverConnection, records: Sequence[StoredEvent]) -> list[int]:
    # One short statement whatever the batch size: the columns travel as ten
    # arrays. PostgreSQL draws identity values in the order of INSERT ...
    # SELECT ... ORDER BY, which is what SQLAlchemy's sorted form relies on too.
    columns = {name: [getattr(record, name) for record in records] for name in _ARRAY_TYPES}
    return sorted(int(row[0]) for row in conn.run(_INSERT_UNNEST, columns, fetch=True))


def _insert_sqlite(conn: DriverConnection, records: Sequence[StoredEvent]) -> list[int]:
    # The first row's INSERT takes the write lock (if the transaction does not
    # hold it yet) and returns its position; `executemany` inserts the rest.
    # Under the lock each row gets the next rowid (one above the largest), so
    # when the last one is `first + n - 1` the batch holds exactly the
    # positions from `first`, in order.
    one = compiled(conn.dialect, "insert_event", _insert_statement)
    first = int(conn.run(one.sql, _sqlite_row(records[0]), fetch=True)[0][0])
    if len(records) == 1:
        return [first]
    many = compiled(conn.dialect, "insert_events", _insert_rows_statement)
    conn.run(many.sql, [_sqlite_row(record) for record in records[1:]], many=True)
    last = int(conn.run("SELECT last_insert_rowid()", (), fetch=True)[0][0])
    if last == first + len(records) - 1:
        return list(range(first, last + 1))
    # SQLite chose rowids some other way (only once the largest rowid is taken): ask.
    marks = ", ".join("?" * len(records))
    rows = conn.run(
        f"SELECT event_id, global_position FROM events WHERE event_id IN ({marks})",
        [record.event_id.hex for record in records],
        fetch=True,
    )
    found = {event_id: int(position) for event_id, position in rows}
    return [found[record.event_id.hex] for record in records]


def _sqlite_row(record: StoredEvent) -> tuple[Any, ...]:
    # In the column order of `_COLUMN_NAMES` (the compiled INSERT's order, a
    # test checks), as SQLAlchemy's SQLite types store them: the UUID as 32
    # hex digits, the time as naive UTC text with microseconds.
    return (
        record.stream_id,
        record.aggregate_id,
        record.aggregate_type,
        record.version,
        record.event_type,
        record.schema_version,
        record.event_id.hex,
        sqlite_datetime(record.occurred_at),
        record.payload,
        record.metadata,
    )


def _postgresql_row(record: StoredEvent) -> dict[str, Any]:
    return {
        "stream_id": record.stream_id,
        "aggregate_id": record.aggregate_id,
        "aggregate_type": record.aggregate_type,
        "version": record.version,
        "event_type": record.event_type,
        "schema_version": record.schema_version,
        "event_id": record.event_id,
        "occurred_at": record.occurred_at,
        "payload": record.payload,
        "metadata": record.metadata,
    }


def sqlite_datetime(value: datetime) -> str:
    """`value` as the store's SQLite text: UTC, naive, always with microseconds."""
    zone = value.tzinfo
    if zone is UTC:  # what `trigger` stamps: cut the "+00:00" off
        return value.isoformat(" ", "microseconds")[:-6]
    if zone is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")


_new_tuple = tuple.__new__


def _record(row: Sequence[Any]) -> StoredEvent:
    event_id, occurred_at = row[7], row[8]
    if not isinstance(event_id, UUID):  # SQLite: text; PostgreSQL: a UUID already
        event_id = uuid_from_hex(event_id) if len(event_id) == 32 else UUID(event_id)
    if isinstance(occurred_at, str):  # SQLite: text, always UTC (the store only writes UTC)
        occurred_at = datetime.fromisoformat(occurred_at + "+00:00")
    elif occurred_at.tzinfo is None:
        occurred_at = occurred_at.replace(tzinfo=UTC)
    elif occurred_at.tzinfo is not UTC:  # PostgreSQL answers in the session's zone
        occurred_at = occurred_at.astimezone(UTC)
    # The tuple itself: `StoredEvent(...)` would add a Python-level call per row.
    return _new_tuple(
        StoredEvent,
        (
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            row[6],
            event_id,
            occurred_at,
            row[9],
            row[10],
        ),
    )
