"""The stored form of an event: what the events table holds and the bus carries."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple
from uuid import UUID

# Metadata texts whose ids a reader already knows, each with the event id
# it was made for. An event that no other event caused is its own
# correlation id (most events read), and parsing that back out of the text
# costs the codec more than validating the payload. The Kafka decoder notes
# such a text together with the very `UUID` object it put in the record;
# the codec takes a note only for that same object, so that a note can be
# missing or stale (and the text is then parsed), never wrong.
SELF_CORRELATED: dict[str, UUID] = {}
# Notes nobody took (events no handler wanted) are dropped all at once.
SELF_CORRELATED_LIMIT = 50_000


def stream_id_for(aggregate_type: str, aggregate_id: str) -> str:
    """The store's stream id of one aggregate: its type name and id.

    Prefixing the type keeps `Order("42")` and `Customer("42")` apart in one
    store; aggregate type names never contain a colon, so the first colon
    splits it back.
    """
    return f"{aggregate_type}:{aggregate_id}"


class StoredEvent(NamedTuple):
    """One event as bytes and columns, before decoding or after encoding.

    `payload` is the event's own fields as JSON; `metadata` is a JSON object
    with the correlation and causation ids. `position` is the global position
    in its store (0 until appended). Immutable; `_replace` makes a changed copy.
    """

    position: int
    stream_id: str
    aggregate_id: str
    aggregate_type: str
    version: int
    event_type: str
    schema_version: int
    event_id: UUID
    occurred_at: datetime
    payload: str
    metadata: str
