"""Stored events of several types and schema versions, appended to a real store."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import count
from uuid import uuid4

from eventsource import EventStore, StoredEvent

_ids = count(1)


def record(event_type: str, schema_version: int, payload: str) -> StoredEvent:
    """A record of its own one-event stream, as a producer at `schema_version` wrote it."""
    aggregate_id = f"t{next(_ids)}"
    return StoredEvent(
        position=0,
        stream_id=f"thing:{aggregate_id}",
        aggregate_id=aggregate_id,
        aggregate_type="thing",
        version=1,
        event_type=event_type,
        schema_version=schema_version,
        event_id=uuid4(),
        occurred_at=datetime.now(UTC),
        payload=payload,
        metadata="{}",
    )


def stream_at(store: EventStore, position: int) -> str:
    """The stream of the event stored at `position`."""
    [found] = store.read_log(position - 1, 1)
    assert found.position == position
    return found.stream_id


def append(store: EventStore, *records: StoredEvent) -> list[int]:
    """Append `records`; their positions."""
    return store.append_records(list(records))


# The history the dry-run tests read, with the current classes of `DRY_APP`:
# dry.Added was v1 {sku, quantity}, is v2 {sku, count} with an upcaster; one v1
# payload lacks `quantity` (the upcaster fails on it, at the fifth event);
# dry.Removed has two payloads that fail validation; dry.Unknown has no class.
HISTORY = [
    ("dry.Added", 1, '{"sku": "a", "quantity": 1}'),
    ("dry.Added", 1, '{"sku": "b", "quantity": 2}'),
    ("dry.Added", 2, '{"sku": "c", "count": 3}'),
    ("dry.Added", 1, '{"sku": "d", "quantity": 4}'),
    ("dry.Added", 1, '{"sku": "e"}'),
    ("dry.Removed", 1, '{"sku": 5}'),
    ("dry.Added", 2, '{"sku": "f", "count": 6}'),
    ("dry.Unknown", 1, "{}"),
    ("dry.Removed", 1, '{"sku": 7}'),
    ("dry.Added", 1, '{"sku": "g", "quantity": 8}'),
    ("dry.Added", 2, '{"sku": "h", "count": 9}'),
]

DRY_APP = """
from eventsource import Event, upcaster


class Added(Event):
    event_type = "dry.Added"
    schema_version = 2
    sku: str
    count: int


@upcaster(Added, from_version=1)
def _quantity_is_count(payload):
    return {"sku": payload["sku"], "count": payload["quantity"]}


class Removed(Event):
    event_type = "dry.Removed"
    sku: str
"""


def append_history(store: EventStore) -> list[int]:
    """`HISTORY` appended to `store`; the positions."""
    return append(store, *(record(*row) for row in HISTORY))
