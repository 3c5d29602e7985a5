"""Reading the store's log straight into Kafka messages, for the relay.

The relay never needs Python `UUID` or `datetime` objects: the database
formats every header value as the wire format's text and assembles each
message's headers as a JSON object, which orjson turns into the dict that
librdkafka takes, in C. (The general `EventStore.read_log` builds full
records and is several times slower per event.)
"""

from __future__ import annotations

from itertools import pairwise
from operator import itemgetter
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Connection, text
from sqlalchemy.exc import DataError

from eventsource.bus import wire
from eventsource.gc_pause import paused_gc
from eventsource.store.engine import fetch_raw, read_transaction
from eventsource.store.eventstore import EventStore

_new = tuple.__new__


# The headers every message has, in the wire format's order; correlation and
# causation ids follow when the event has them.
_ALWAYS = (
    wire.H_CONTENT_TYPE,
    wire.H_TYPE,
    wire.H_SCHEMA,
    wire.H_EVENT_ID,
    wire.H_AGG_TYPE,
    wire.H_AGG_ID,
    wire.H_VERSION,
    wire.H_POSITION,
    wire.H_OCCURRED,
)
_BOTH = (*_ALWAYS, wire.H_CORRELATION, wire.H_CAUSATION)


def _pairs(values: dict[str, str], names: tuple[str, ...]) -> str:
    """`'name', <SQL value>, ...` for a JSON object of these headers, in order."""
    return ", ".join(f"'{name}', {values[name]}" for name in names)


_POSTGRES_VALUES = {
    wire.H_CONTENT_TYPE: f"'{wire.CONTENT_TYPE}'::text",
    wire.H_TYPE: "event_type",
    wire.H_SCHEMA: "schema_version::text",
    wire.H_EVENT_ID: "event_id::text",
    wire.H_AGG_TYPE: "aggregate_type",
    wire.H_AGG_ID: "aggregate_id",
    wire.H_VERSION: "version::text",
    wire.H_POSITION: "global_position::text",
    wire.H_OCCURRED: """to_char(occurred_at AT TIME ZONE 'UTC',
                                'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')""",
    wire.H_CORRELATION: "metadata::jsonb ->> 'correlation_id'",
    wire.H_CAUSATION: "metadata::jsonb ->> 'causation_id'",
}
# Each row's headers travel as JSON text (nulls stripped: ids the event lacks):
# a JSON array of the whole batch would meet PostgreSQL's 1 GB limit on one
# value first.
_POSTGRES = text(
    f"""
    SELECT global_position, aggregate_type, aggregate_id, payload,
           json_strip_nulls(json_build_object(
               {_pairs(_POSTGRES_VALUES, _BOTH)}
           ))::text,
           floor(extract(epoch FROM occurred_at) * 1000)::bigint
    FROM events WHERE global_position > :after ORDER BY global_position LIMIT :limit
    """
)

# SQLite holds the time as "YYYY-MM-DD HH:MM:SS.ffffff" in UTC and the id as
# 32 hex digits; the batch's subquery reads the ids out of the metadata.
_SQLITE_VALUES = {
    wire.H_CONTENT_TYPE: f"'{wire.CONTENT_TYPE}'",
    wire.H_TYPE: "event_type",
    wire.H_SCHEMA: "CAST(schema_version AS TEXT)",
    wire.H_EVENT_ID: """substr(event_id, 1, 8) || '-' || substr(event_id, 9, 4) || '-'
        || substr(event_id, 13, 4) || '-' || substr(event_id, 17, 4) || '-'
        || substr(event_id, 21, 12)""",
    wire.H_AGG_TYPE: "aggregate_type",
    wire.H_AGG_ID: "aggregate_id",
    wire.H_VERSION: "CAST(version AS TEXT)",
    wire.H_POSITION: "CAST(global_position AS TEXT)",
    wire.H_OCCURRED: "replace(occurred_at, ' ', 'T') || '+00:00'",
    wire.H_CORRELATION: "es_correlation",
    wire.H_CAUSATION: "es_causation",
}
# One object per combination of ids present: SQLite's json_object keeps null
# members, and dropping them afterwards (json_patch) cost 1.3 µs per event.
_SQLITE_HEADERS = f"""
    CASE WHEN es_correlation IS NULL AND es_causation IS NULL
         THEN json_object({_pairs(_SQLITE_VALUES, _ALWAYS)})
         WHEN es_causation IS NULL
         THEN json_object({_pairs(_SQLITE_VALUES, (*_ALWAYS, wire.H_CORRELATION))})
         WHEN es_correlation IS NULL
         THEN json_object({_pairs(_SQLITE_VALUES, (*_ALWAYS, wire.H_CAUSATION))})
         ELSE json_object({_pairs(_SQLITE_VALUES, _BOTH)})
    END
"""
_SQLITE_MESSAGE = f"""
    global_position, aggregate_type, aggregate_id, payload, {_SQLITE_HEADERS},
    -- whole seconds first: SQLite's date functions round .9995 s up
    unixepoch(substr(occurred_at, 1, 19)) * 1000 + CAST(substr(occurred_at, 21, 3) AS INTEGER)
"""
_SQLITE_BATCH = """
    FROM (SELECT *,
                 CASE WHEN length(metadata) > 2 THEN metadata ->> '$.correlation_id' END
                     AS es_correlation,
                 CASE WHEN length(metadata) > 2 THEN metadata ->> '$.causation_id' END
                     AS es_causation
          FROM events WHERE global_position > :after
          ORDER BY global_position LIMIT :limit)
"""
# The batch comes back as one JSON array in one row, which orjson parses into
# the messages' fields in C. Python's sqlite3 also releases the GIL around
# every row it steps, so a read of thousands of rows from the relay's
# read-ahead thread would queue for the GIL once per row behind the thread
# producing to Kafka; one row is one wait.
_SQLITE = text(f"SELECT json_group_array(json_array({_SQLITE_MESSAGE})) {_SQLITE_BATCH}")
# The same rows one by one, for a batch whose JSON would be longer than SQLite
# allows a string to be (1 GB unless built otherwise: big events, many of them).
_SQLITE_ROWS = text(f"SELECT {_SQLITE_MESSAGE} {_SQLITE_BATCH} ORDER BY global_position")


class OutgoingMessage(NamedTuple):
    """One event as the relay produces it. Text values go to librdkafka as
    they are (it writes them as UTF-8), which saves encoding them here; the
    headers are in the wire format's order."""

    position: int
    aggregate_type: str
    key: str
    value: str
    headers: dict[str, str | bytes]
    timestamp: int


def read_messages(store: EventStore, after: int, limit: int) -> list[OutgoingMessage]:
    """Up to `limit` events after global position `after`, as Kafka messages, in order."""
    with paused_gc(), read_transaction(store.engine) as conn:
        return _read(conn, after, limit)


def _read(conn: Connection, after: int, limit: int) -> list[OutgoingMessage]:
    parameters = {"after": after, "limit": limit}
    rows: list[Any]
    if conn.dialect.name == "sqlite":
        try:
            rows = orjson.loads(fetch_raw(conn, _SQLITE, parameters)[0][0])
        except DataError as exc:
            if "too big" not in str(exc.orig):
                raise
            rows = _parsed_headers(fetch_raw(conn, _SQLITE_ROWS, parameters))
        if any(a[0] >= b[0] for a, b in pairwise(rows)):
            # SQLite aggregates in the subquery's order, but SQL does not promise it.
            rows.sort(key=itemgetter(0))
    else:
        rows = _parsed_headers(fetch_raw(conn, _POSTGRES, parameters))
    # The tuples themselves: `OutgoingMessage(...)` is a Python-level call per event.
    return [_new(OutgoingMessage, row) for row in rows]


def _parsed_headers(rows: Any) -> list[Any]:
    """Rows whose headers came as JSON text, with the headers parsed."""
    loads = orjson.loads
    return [
        (position, aggregate_type, key, value, loads(headers), timestamp)
        for position, aggregate_type, key, value, headers, timestamp in rows
    ]
