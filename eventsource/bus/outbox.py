"""Reading the store's log straight into Kafka messages, for the relay.

The relay never needs Python `UUID` or `datetime` objects: the database
formats the event id and the time as the wire format's text, and this module
only assembles headers. (The general `EventStore.read_log` builds full
records and is several times slower per event.)
"""

from __future__ import annotations

from itertools import pairwise
from operator import itemgetter
from typing import NamedTuple

import orjson
from sqlalchemy import Connection, text
from sqlalchemy.exc import DataError

from eventsource.bus import wire
from eventsource.gc_pause import paused_gc
from eventsource.store.engine import fetch_raw, read_transaction
from eventsource.store.eventstore import EventStore

_new = tuple.__new__

# The database formats every header value as text, which is faster than Python.
_POSTGRES = text(
    """
    SELECT global_position, aggregate_type, aggregate_id, version::text, event_type,
           schema_version::text, event_id::text,
           to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
           floor(extract(epoch FROM occurred_at) * 1000)::bigint,
           payload, global_position::text AS position_text,
           metadata::jsonb ->> 'correlation_id', metadata::jsonb ->> 'causation_id'
    FROM events WHERE global_position > :after ORDER BY global_position LIMIT :limit
    """
)
# SQLite holds the time as "YYYY-MM-DD HH:MM:SS.ffffff" in UTC and the id as 32 hex digits.
_SQLITE_COLUMNS = """
    global_position, aggregate_type, aggregate_id, CAST(version AS TEXT), event_type,
    CAST(schema_version AS TEXT),
    substr(event_id, 1, 8) || '-' || substr(event_id, 9, 4) || '-'
        || substr(event_id, 13, 4) || '-' || substr(event_id, 17, 4) || '-'
        || substr(event_id, 21, 12),
    replace(occurred_at, ' ', 'T') || '+00:00',
    -- whole seconds first: SQLite's date functions round .9995 s up
    unixepoch(substr(occurred_at, 1, 19)) * 1000 + CAST(substr(occurred_at, 21, 3) AS INTEGER),
    payload, CAST(global_position AS TEXT),
    CASE WHEN length(metadata) > 2 THEN metadata ->> '$.correlation_id' END,
    CASE WHEN length(metadata) > 2 THEN metadata ->> '$.causation_id' END
"""
_SQLITE_BATCH = """
    FROM (SELECT * FROM events WHERE global_position > :after
          ORDER BY global_position LIMIT :limit)
"""
# The batch comes back as one JSON array in one row: Python's sqlite3 releases
# the GIL around every row it steps, so a read of thousands of rows from the
# relay's read-ahead thread would queue for the GIL once per row behind the
# thread producing to Kafka; one row is one wait.
_SQLITE = text(f"SELECT json_group_array(json_array({_SQLITE_COLUMNS})) {_SQLITE_BATCH}")
# The same rows one by one, for a batch whose JSON would be longer than SQLite
# allows a string to be (1 GB unless built otherwise: big events, many of them).
_SQLITE_ROWS = text(f"SELECT {_SQLITE_COLUMNS} {_SQLITE_BATCH} ORDER BY global_position")


class OutgoingMessage(NamedTuple):
    """One event as the relay produces it. Text values go to librdkafka as
    they are (it writes them as UTF-8), which saves encoding them here."""

    position: int
    aggregate_type: str
    key: str
    value: str
    headers: list[tuple[str, str | bytes]]
    timestamp: int


def read_messages(store: EventStore, after: int, limit: int) -> list[OutgoingMessage]:
    """Up to `limit` events after global position `after`, as Kafka messages, in order."""
    with paused_gc(), read_transaction(store.engine) as conn:
        return _read(conn, after, limit)


def _read(conn: Connection, after: int, limit: int) -> list[OutgoingMessage]:
    parameters = {"after": after, "limit": limit}
    if conn.dialect.name == "sqlite":
        try:
            rows = orjson.loads(fetch_raw(conn, _SQLITE, parameters)[0][0])
        except DataError as exc:
            if "too big" not in str(exc.orig):
                raise
            rows = fetch_raw(conn, _SQLITE_ROWS, parameters)
        if any(a[0] >= b[0] for a, b in pairwise(rows)):
            # SQLite aggregates in the subquery's order, but SQL does not promise it.
            rows = sorted(rows, key=itemgetter(0))
    else:
        rows = fetch_raw(conn, _POSTGRES, parameters)
    headers = wire.headers
    return [
        # The tuple itself: `OutgoingMessage(...)` is a Python-level call per event.
        _new(
            OutgoingMessage,
            (
                position,
                aggregate_type,
                aggregate_id,
                payload,
                headers(
                    event_type,
                    schema_version,
                    event_id,
                    aggregate_type,
                    aggregate_id,
                    version,
                    position_text,
                    occurred_at,
                    correlation_id,
                    causation_id,
                ),
                timestamp,
            ),
        )
        for (
            position,
            aggregate_type,
            aggregate_id,
            version,
            event_type,
            schema_version,
            event_id,
            occurred_at,
            timestamp,
            payload,
            position_text,
            correlation_id,
            causation_id,
        ) in rows
    ]
