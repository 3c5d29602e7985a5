"""The Kafka message format of an event (documented in docs/wire-format.md).

topic    <context>.<aggregate type>
key      the aggregate id, UTF-8
value    the event's own fields as a JSON object, UTF-8 (the stored payload)
timestamp  occurred_at in milliseconds (CreateTime)
headers  (UTF-8 strings)
  content-type       application/json
  es-event-type      the event's stable type name
  es-schema-version  schema version of the payload
  es-event-id        UUID
  es-aggregate-type  aggregate type name
  es-aggregate-id    aggregate id (same as the key)
  es-version         the event's version in its stream (1-based)
  es-position        global position in the source store
  es-occurred-at     ISO 8601 UTC, microseconds
  es-correlation-id  UUID (absent when none)
  es-causation-id    UUID (absent when none)
  traceparent        W3C trace context of the save (absent unless the saving service traced)
  es-store           the id of the store that wrote it (see `EventStore.identity`)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

import orjson

from eventsource.bus.base import LogMessage
from eventsource.errors import DecodeError
from eventsource.events.codec import metadata_ids
from eventsource.events.records import (
    SELF_CORRELATED,
    SELF_CORRELATED_LIMIT,
    StoredEvent,
    stream_id_for,
)
from eventsource.events.uuids import uuid_int_of_bytes, uuid_of_int
from eventsource.observability.tracing import traceparent_of

CONTENT_TYPE = "application/json"
H_CONTENT_TYPE = "content-type"
H_TYPE = "es-event-type"
H_SCHEMA = "es-schema-version"
H_EVENT_ID = "es-event-id"
H_AGG_TYPE = "es-aggregate-type"
H_AGG_ID = "es-aggregate-id"
H_VERSION = "es-version"
H_POSITION = "es-position"
H_OCCURRED = "es-occurred-at"
H_CORRELATION = "es-correlation-id"
H_CAUSATION = "es-causation-id"
H_STORE = "es-store"
# W3C trace context, when the saving service traced (see observability.tracing).
H_TRACEPARENT = "traceparent"

Headers = list[tuple[str, str | bytes]]
_CONTENT = (H_CONTENT_TYPE, CONTENT_TYPE)
_new = tuple.__new__
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def headers(  # noqa: PLR0917 - the header values, positional: one call per event relayed
    event_type: str,
    schema_version: str,
    event_id: str,
    aggregate_type: str,
    aggregate_id: str,
    version: str,
    position: str,
    occurred_at: str,
    correlation_id: str | None,
    causation_id: str | None,
    /,
    store_id: str | None = None,
    traceparent: str | None = None,
) -> Headers:
    """The headers of an event's message, all as text (`occurred_at` in ISO 8601);
    librdkafka writes text as UTF-8."""
    out: Headers = [
        _CONTENT,
        (H_TYPE, event_type),
        (H_SCHEMA, schema_version),
        (H_EVENT_ID, event_id),
        (H_AGG_TYPE, aggregate_type),
        (H_AGG_ID, aggregate_id),
        (H_VERSION, version),
        (H_POSITION, position),
        (H_OCCURRED, occurred_at),
    ]
    if correlation_id:
        out.append((H_CORRELATION, correlation_id))
    if causation_id:
        out.append((H_CAUSATION, causation_id))
    if traceparent:
        out.append((H_TRACEPARENT, traceparent))
    if store_id:
        out.append((H_STORE, store_id))
    return out


def encode(record: StoredEvent, store_id: str | None = None) -> tuple[bytes, bytes, Headers, int]:
    """`(key, value, headers, timestamp_ms)` of the Kafka message for `record`
    (written by the store `store_id`)."""
    text = headers(
        record.event_type,
        str(record.schema_version),
        str(record.event_id),
        record.aggregate_type,
        record.aggregate_id,
        str(record.version),
        str(record.position),
        record.occurred_at.isoformat(timespec="microseconds"),
        *metadata_ids(record.metadata),
        store_id=store_id,
        traceparent=traceparent_of(record.metadata),
    )
    encoded: Headers = [(name, str(value).encode()) for name, value in text]
    timestamp = milliseconds(record.occurred_at)
    return record.aggregate_id.encode(), record.payload.encode(), encoded, timestamp


def decode(  # noqa: PLR0917 - the fields of one Kafka message
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes]] | None,
) -> StoredEvent:
    """The stored event a Kafka message carries; `DecodeError` naming where it was."""
    # (A message made of decoded fields always has its record.)
    return cast(
        StoredEvent, message(decode_fields(topic, partition, offset, key, value, headers))[3]
    )


# A decoded message as one plain tuple of text, numbers and a datetime: its
# topic, partition and offset, then `StoredEvent`'s fields with the event id
# as its 128-bit int, then whether the metadata is the event's own
# correlation id. The garbage collector stops tracking such a tuple at its
# first young collection, so a batch of them never reaches the oldest
# generation (whose collections walk every object the process holds);
# `message` makes the `LogMessage` when it is read.
MessageFields = tuple[
    str, int, int, int, str, str, str, int, str, int, int, datetime, str, str, bool
]


def decode_fields(  # noqa: PLR0917 - the fields of one Kafka message
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes]] | None,
) -> MessageFields:
    """`decode`, validated all the same, as `MessageFields` (the global position
    fourth)."""
    fields = _in_our_order(headers) if headers is not None else None
    if fields is None:
        fields = _by_name(topic, partition, offset, headers)
    (
        content_type,
        event_type_b,
        schema_b,
        event_id_b,
        aggregate_type_b,
        aggregate_id_b,
        version_b,
        position_b,
        occurred_b,
        correlation,
        causation,
        traceparent,
    ) = fields
    try:
        event_type = event_type_b.decode()
        aggregate_type = aggregate_type_b.decode()
        aggregate_id = aggregate_id_b.decode()
        version = int(version_b)
        position = int(position_b)
        schema_version = int(schema_b)
        event_id = uuid_int_of_bytes(event_id_b)
        occurred_at = datetime.fromisoformat(occurred_b.decode())
        if value is None:
            raise ValueError("the message has no value")
        payload = value.decode()
        if content_type is not None and content_type != b"application/json":
            raise ValueError(f"content-type {content_type!r} is not {CONTENT_TYPE}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(
            f"malformed message: {exc}",
            event_type=_text(event_type_b),
            topic=topic,
            partition=partition,
            offset=offset,
        ) from exc
    if occurred_at.tzinfo is None:
        raise DecodeError(
            "es-occurred-at has no time zone",
            event_type=event_type,
            topic=topic,
            partition=partition,
            offset=offset,
        )
    self_correlated = (
        correlation == event_id_b
        and causation is None
        and traceparent is None
        and _plain(event_id_b)
    )
    if self_correlated:
        metadata = f'{{"correlation_id":"{event_id_b.decode()}"}}'
    else:
        metadata = _metadata_text(correlation, causation, traceparent)
    return (
        topic,
        partition,
        offset,
        position,
        stream_id_for(aggregate_type, aggregate_id),
        aggregate_id,
        aggregate_type,
        version,
        event_type,
        schema_version,
        event_id,
        occurred_at,
        payload,
        metadata,
        self_correlated,
    )


def message(fields: MessageFields) -> LogMessage:
    """The `LogMessage` of decoded fields."""
    (
        topic,
        partition,
        offset,
        position,
        stream_id,
        aggregate_id,
        aggregate_type,
        version,
        event_type,
        schema_version,
        event_number,
        occurred_at,
        payload,
        metadata,
        self_correlated,
    ) = fields
    event_id = uuid_of_int(event_number)
    if self_correlated:
        # Its own correlation id: the codec takes the ids from this note.
        if len(SELF_CORRELATED) >= SELF_CORRELATED_LIMIT:
            SELF_CORRELATED.clear()
        SELF_CORRELATED[metadata] = event_id
    # The tuples themselves: `StoredEvent(...)` and `LogMessage(...)` are
    # Python-level calls, and this runs for every message read.
    record = _new(
        StoredEvent,
        (
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
            metadata,
        ),
    )
    return _new(LogMessage, (topic, partition, offset, record, None))


_Fields = tuple[
    bytes | None,
    bytes,
    bytes,
    bytes,
    bytes,
    bytes,
    bytes,
    bytes,
    bytes,
    bytes | None,
    bytes | None,
    bytes | None,
]
_OUR_ORDER = (
    H_CONTENT_TYPE,
    H_TYPE,
    H_SCHEMA,
    H_EVENT_ID,
    H_AGG_TYPE,
    H_AGG_ID,
    H_VERSION,
    H_POSITION,
    H_OCCURRED,
)

_USUAL_ORDER = (*_OUR_ORDER, H_CORRELATION, H_STORE)


def _in_our_order(headers: list[tuple[str, bytes]]) -> _Fields | None:
    """The header values when they come in the order `headers()` writes them
    (every message the relay published), else None: one tuple comparison
    instead of a dict and eleven lookups per message."""
    count = len(headers)
    if count == 11:
        # The relay's usual message (a correlation id, no causation id, the
        # store's id), unpacked in one statement: the general form below,
        # slicing and looping over the optional headers, takes 0.44 us a
        # message against 0.24.
        (
            (n0, content_type),
            (n1, event_type),
            (n2, schema),
            (n3, event_id),
            (n4, aggregate_type),
            (n5, aggregate_id),
            (n6, version),
            (n7, position),
            (n8, occurred),
            (n9, own_correlation),
            (n10, _store),
        ) = headers
        if (n0, n1, n2, n3, n4, n5, n6, n7, n8, n9, n10) == _USUAL_ORDER:
            return (
                content_type,
                event_type,
                schema,
                event_id,
                aggregate_type,
                aggregate_id,
                version,
                position,
                occurred,
                own_correlation,
                None,
                None,
            )
    if count < 9 or count > 13:
        return None
    (
        (n0, content_type),
        (n1, event_type),
        (n2, schema),
        (n3, event_id),
        (n4, aggregate_type),
        (n5, aggregate_id),
        (n6, version),
        (n7, position),
        (n8, occurred),
    ) = headers[:9]
    if (n0, n1, n2, n3, n4, n5, n6, n7, n8) != _OUR_ORDER:
        return None
    correlation = causation = None
    store = traceparent = None
    for name, text in headers[9:]:
        if store is not None:
            return None  # the store's id comes last
        if name == H_CORRELATION and correlation is None and causation is None:
            correlation = text
        elif name == H_CAUSATION and causation is None:
            causation = text
        elif name == H_TRACEPARENT and traceparent is None:
            traceparent = text
        elif name == H_STORE:
            store = text
        else:
            return None
    return (
        content_type,
        event_type,
        schema,
        event_id,
        aggregate_type,
        aggregate_id,
        version,
        position,
        occurred,
        correlation,
        causation,
        traceparent,
    )


def _by_name(
    topic: str, partition: int, offset: int, headers: list[tuple[str, bytes]] | None
) -> _Fields:
    h: dict[str, bytes] = dict(headers) if headers else {}
    try:
        return (
            h.get(H_CONTENT_TYPE),
            h[H_TYPE],
            h[H_SCHEMA],
            h[H_EVENT_ID],
            h[H_AGG_TYPE],
            h[H_AGG_ID],
            h[H_VERSION],
            h[H_POSITION],
            h[H_OCCURRED],
            h.get(H_CORRELATION),
            h.get(H_CAUSATION),
            h.get(H_TRACEPARENT),
        )
    except KeyError as exc:
        raise DecodeError(
            f"missing header {exc.args[0]!r}; not an eventsource event",
            topic=topic,
            partition=partition,
            offset=offset,
        ) from exc


def _metadata_text(
    correlation: bytes | None, causation: bytes | None, traceparent: bytes | None = None
) -> str:
    """The store's metadata column for these ids, as `orjson.dumps` writes it."""
    if traceparent:
        traced = orjson.loads(_metadata_text(correlation, causation))
        traced["traceparent"] = traceparent.decode(errors="replace")
        return orjson.dumps(traced).decode()
    if not correlation and not causation:
        return "{}"
    if _plain(correlation) and _plain(causation):
        # Nothing to escape: the JSON is the text itself (the common case).
        if not causation:
            return f'{{"correlation_id":"{correlation.decode()}"}}'  # type: ignore[union-attr]
        if not correlation:
            return f'{{"causation_id":"{causation.decode()}"}}'
        return (
            f'{{"correlation_id":"{correlation.decode()}","causation_id":"{causation.decode()}"}}'
        )

    meta: dict[str, str] = {}
    if correlation:
        meta["correlation_id"] = correlation.decode(errors="replace")
    if causation:
        meta["causation_id"] = causation.decode(errors="replace")
    return orjson.dumps(meta).decode()


def _plain(value: bytes | None) -> bool:
    """Whether `value` is absent or UUID-shaped text, which JSON needs no escape for."""
    return not value or (len(value) == 36 and not value.translate(None, _UUID_DIGITS))


_UUID_DIGITS = b"0123456789abcdefABCDEF-"


def milliseconds(moment: datetime) -> int:
    """Whole milliseconds since the Unix epoch, exactly (`timestamp() * 1000` is a
    float that can land just below a whole millisecond)."""
    return (moment - _EPOCH) // _MILLISECOND


def store_of(headers: list[tuple[str, bytes]] | None) -> str | None:
    """The id of the store that wrote a message (None for messages relayed
    before stores had ids)."""
    for name, value in headers or ():
        if name == H_STORE:
            return value.decode(errors="replace")
    return None


def position_of(headers: list[tuple[str, bytes]] | None) -> int | None:
    """The global position header of a message, if it has a valid one."""
    for name, value in headers or ():
        if name == H_POSITION:
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _text(value: bytes | None) -> str | None:
    return value.decode(errors="replace") if value is not None else None
