"""A transform's output records: their metadata, and their Kafka messages.

An output is an event like any other, stamped from its cause: its
`causation_id` is the input event's id and its `correlation_id` the input's
correlation id (or, for an event no other caused, its own id), as a
reactor's new events are. Its `occurred_at` is the cause's, so event time
survives the transform (windows downstream count business time). Its event
id is derived from the transform's name, the cause's id and the output's
index among the cause's outputs: running the transform again over the same
input writes the same ids.

On Kafka an output message has eventsource's wire format (docs/wire-format.md)
with `es-position` and `es-version` 0: it comes from no store, so consumers
keep no duplicate filter by position for it. On the embedded log the
outputs are appended to the context's store, with real versions and
positions (see `Reaction.append`).
"""

from __future__ import annotations

import uuid

from eventsource.bus import wire
from eventsource.errors import EncodeError, EventTooLarge
from eventsource.events.base import METADATA_FIELDS, Event
from eventsource.events.codec import DEFAULT_MAX_EVENT_BYTES, stamp
from eventsource.events.records import stream_id_for
from eventsource.streams.topology import Keyed, Transform

OUTPUT_NAMESPACE = uuid.UUID("3b8f8a57-2f0e-4d8c-a7a4-6b1f0a3c9e21")
_EXCLUDE: set[str] = set(METADATA_FIELDS)
MAX_KEY_LENGTH = 200

Message = tuple[bytes, bytes, wire.Headers, int]


def stamped(transform: Transform, records: list[Keyed], cause: Event) -> list[Event]:
    """Copies of `records`' events with the metadata of outputs of `cause`."""
    out: list[Event] = []
    correlation = cause.correlation_id or cause.event_id
    for index, (key, event) in enumerate(records):
        if not key or len(key) > MAX_KEY_LENGTH:
            raise EncodeError(
                f"transform {transform.name!r}: an output's key (its aggregate id) must be"
                f" 1 to {MAX_KEY_LENGTH} characters, got {key!r}; give it one with key_by()"
            )
        copy = event.model_copy()  # the function may have passed its input through
        stamp(
            copy,
            event_id=uuid.uuid5(OUTPUT_NAMESPACE, f"{transform.name}/{cause.event_id}/{index}"),
            aggregate_id=key,
            aggregate_type=transform.output_type,
            version=0,
            position=0,
            occurred_at=cause.occurred_at,
            correlation_id=correlation,
            causation_id=cause.event_id,
        )
        out.append(copy)
    return out


def message(event: Event, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> Message:
    """`(key, value, headers, timestamp_ms)` of the Kafka message of a stamped output."""
    cls = type(event)
    try:
        value = cls.__pydantic_serializer__.to_json(event, exclude=_EXCLUDE)
    except (ValueError, TypeError) as exc:
        raise EncodeError(f"cannot serialise {cls.event_type}: {exc}") from exc
    if len(value) > max_event_bytes:
        raise EventTooLarge(
            event_type=cls.event_type,
            stream_id=stream_id_for(event.aggregate_type, event.aggregate_id),
            size=len(value),
            limit=max_event_bytes,
        )
    text = wire.headers(
        cls.event_type,
        str(cls.schema_version),
        str(event.event_id),
        event.aggregate_type,
        event.aggregate_id,
        "0",  # no version: the record belongs to no stream of a store
        "0",  # no global position
        event.occurred_at.isoformat(timespec="microseconds"),
        str(event.correlation_id) if event.correlation_id else None,
        str(event.causation_id) if event.causation_id else None,
    )
    headers: wire.Headers = [(name, str(v).encode()) for name, v in text]
    return event.aggregate_id.encode(), value, headers, wire.milliseconds(event.occurred_at)
