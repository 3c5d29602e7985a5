"""Reading the store's log straight into Kafka messages, for the relay.

The relay never needs Python `UUID` or `datetime` objects: the database
formats every header value as the wire format's text, and each message's
headers are a dict of those texts. (The general `EventStore.read_log` builds
full records and is several times slower per event.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import pairwise
from operator import itemgetter
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Connection, text
from sqlalchemy.exc import DataError

from eventsource.bus.wire import (
    CONTENT_TYPE,
    H_AGG_ID,
    H_AGG_TYPE,
    H_CAUSATION,
    H_CONTENT_TYPE,
    H_CORRELATION,
    H_EVENT_ID,
    H_OCCURRED,
    H_POSITION,
    H_SCHEMA,
    H_STORE,
    H_TRACEPARENT,
    H_TYPE,
    H_VERSION,
)
from eventsource.errors import StoreError
from eventsource.events.codec import metadata_ids
from eventsource.observability.tracing import traceparent_of
from eventsource.store.engine import fetch_raw, read_transaction
from eventsource.store.eventstore import EventStore

_new = tuple.__new__

# Both databases answer with these values per event, in this order: position,
# aggregate type, aggregate id (the key), payload (the value), then the texts
# of the event type, schema version, event id, version and time of the
# headers, the Kafka timestamp in milliseconds, and the metadata as stored.
# Formatting in the database is cheaper than in Python; building each header
# object there (with the ids parsed out of the metadata) was not: it cost
# PostgreSQL several microseconds per event.
_POSTGRES = text(
    """
    SELECT global_position, aggregate_type, aggregate_id, payload, event_type,
           schema_version::text, event_id::text, version::text,
           to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
           floor(extract(epoch FROM occurred_at) * 1000)::bigint,
           metadata
    FROM events WHERE global_position > :after ORDER BY global_position LIMIT :limit
    """
)
# SQLite holds the time as "YYYY-MM-DD HH:MM:SS.ffffff" in UTC and the id as
# 32 hex digits.
_SQLITE_VALUES = """
    global_position, aggregate_type, aggregate_id, payload, event_type,
    CAST(schema_version AS TEXT),
    substr(event_id, 1, 8) || '-' || substr(event_id, 9, 4) || '-'
        || substr(event_id, 13, 4) || '-' || substr(event_id, 17, 4) || '-'
        || substr(event_id, 21, 12),
    CAST(version AS TEXT),
    replace(occurred_at, ' ', 'T') || '+00:00',
    -- whole seconds first: SQLite's date functions round .9995 s up
    unixepoch(substr(occurred_at, 1, 19)) * 1000 + CAST(substr(occurred_at, 21, 3) AS INTEGER),
    metadata
"""
_SQLITE_BATCH = """
    FROM (SELECT * FROM events WHERE global_position > :after
          ORDER BY global_position LIMIT :limit)
"""
# The batch comes back as one JSON array in one row, which orjson parses in C.
# Python's sqlite3 also releases the GIL around every row it steps, so a read
# of thousands of rows from the relay's read-ahead thread would queue for the
# GIL once per row behind the thread producing to Kafka; one row is one wait.
_SQLITE = text(f"SELECT json_group_array(json_array({_SQLITE_VALUES})) {_SQLITE_BATCH}")
# The same rows one by one, for a batch whose JSON would be longer than SQLite
# allows a string to be (1 GB unless built otherwise: big events, many of them).
_SQLITE_ROWS = text(f"SELECT {_SQLITE_VALUES} {_SQLITE_BATCH} ORDER BY global_position")


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
    """Up to `limit` events after global position `after`, as Kafka messages, in
    order, each stamped with the store's identity."""
    identity = store.identity()
    with read_transaction(store.engine) as conn:
        return _read(conn, after, limit, identity)


def _read(conn: Connection, after: int, limit: int, identity: str) -> list[OutgoingMessage]:
    parameters = {"after": after, "limit": limit}
    rows: Sequence[Sequence[Any]]
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
    return _messages(rows, identity)


def _messages(rows: Iterable[Sequence[Any]], identity: str) -> list[OutgoingMessage]:
    out: list[OutgoingMessage] = []
    append = out.append
    for (
        position,
        aggregate_type,
        key,
        value,
        event_type,
        schema_version,
        event_id,
        version,
        occurred_at,
        timestamp,
        metadata,
    ) in rows:
        # In the wire format's order; see `wire.headers`.
        headers: dict[str, str | bytes] = {
            H_CONTENT_TYPE: CONTENT_TYPE,
            H_TYPE: event_type,
            H_SCHEMA: schema_version,
            H_EVENT_ID: event_id,
            H_AGG_TYPE: aggregate_type,
            H_AGG_ID: key,
            H_VERSION: version,
            H_POSITION: str(position),
            H_OCCURRED: occurred_at,
        }
        if metadata != "{}":
            try:
                correlation, causation = metadata_ids(metadata)
            except ValueError as exc:
                raise StoreError(
                    f"the event at global position {position} has unreadable metadata: {exc}"
                ) from exc
            if correlation:
                headers[H_CORRELATION] = correlation
            if causation:
                headers[H_CAUSATION] = causation
            if H_TRACEPARENT in metadata:
                traceparent = traceparent_of(metadata)
                if traceparent:
                    headers[H_TRACEPARENT] = traceparent
        headers[H_STORE] = identity
        # The tuple itself: `OutgoingMessage(...)` is a Python-level call per event.
        append(_new(OutgoingMessage, (position, aggregate_type, key, value, headers, timestamp)))
    return out
