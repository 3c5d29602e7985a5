"""The Kafka message format: round trips, clear errors, and what an independent
client (kcat) reads off the topic, byte for byte, against docs/wire-format.md."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest

from eventsource import EventStore, Repository, StoredEvent, caused_by
from eventsource.bus import wire
from eventsource.bus.config import KafkaConfig
from eventsource.bus.relay import Relay
from eventsource.errors import DecodeError
from tests.bus.model import BusCustomer, BusCustomerRegistered, BusOrder, read_committed

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def record(**overrides: object) -> StoredEvent:
    fields: dict[str, object] = {
        "position": 4711,
        "stream_id": "order:o-1",
        "aggregate_id": "o-1",
        "aggregate_type": "order",
        "version": 3,
        "event_type": "bus.item_added",
        "schema_version": 2,
        "event_id": UUID("0b1f5e0c-2a8c-4a3e-9d55-6a1f1d1c2b3a"),
        "occurred_at": datetime(2025, 3, 4, 5, 6, 7, 890123, tzinfo=UTC),
        "payload": '{"sku":"Zoë-€","quantity":2}',
        "metadata": "{}",
    }
    fields.update(overrides)
    return StoredEvent(**fields)  # type: ignore[arg-type]


def as_received(headers: wire.Headers) -> list[tuple[str, bytes]]:
    """Headers as a consumer hands them back: values are bytes."""
    return [(k, v if isinstance(v, bytes) else v.encode()) for k, v in headers]


def roundtrip(original: StoredEvent) -> StoredEvent:
    key, value, headers, _ = wire.encode(original)
    return wire.decode("ctx.order", 2, 99, key, value, as_received(headers))


def test_encode_then_decode_gives_the_same_record() -> None:
    original = record()
    assert roundtrip(original) == original


def test_round_trip_keeps_correlation_and_causation() -> None:
    correlation, causation = uuid4(), uuid4()
    metadata = json.dumps(
        {"correlation_id": str(correlation), "causation_id": str(causation)}, separators=(",", ":")
    )
    original = record(metadata=metadata)
    assert roundtrip(original) == original
    _, _, headers, _ = wire.encode(original)
    names = dict(as_received(headers))
    assert names["es-correlation-id"] == str(correlation).encode()
    assert names["es-causation-id"] == str(causation).encode()


def test_stored_events_round_trip_through_the_wire(
    sqlite_store_factory: Callable[..., EventStore],
) -> None:
    store = sqlite_store_factory()
    orders = Repository(store, BusOrder)
    order = BusOrder.place("ordre-Zoë")
    order.add("sku-1", 3)
    orders.save(order)
    customer = BusCustomer("c-1")
    with caused_by(store.read_events()[0]):
        customer.trigger(BusCustomerRegistered(name='A "quoted" name\nwith € and 😀'))
    Repository(store, BusCustomer).save(customer)
    records = store.read_log()
    assert len(records) == 3
    for original in records:
        decoded = roundtrip(original)
        assert decoded == original
        assert store.codec.decode(decoded) == store.codec.decode(original)


def test_timestamp_is_occurred_at_in_milliseconds() -> None:
    when = datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)
    _, _, _, timestamp = wire.encode(record(occurred_at=when))
    assert timestamp == (when - EPOCH) // timedelta(milliseconds=1)


def test_occurred_at_in_another_zone_is_the_same_instant() -> None:
    when = datetime(2025, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    decoded = roundtrip(record(occurred_at=when))
    assert decoded.occurred_at == when


# -- messages that are not events --------------------------------------------------


def good_message() -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    key, value, headers, _ = wire.encode(record())
    return key, value, as_received(headers)


def without(headers: list[tuple[str, bytes]], name: str) -> list[tuple[str, bytes]]:
    return [(k, v) for k, v in headers if k != name]


def replaced(headers: list[tuple[str, bytes]], name: str, value: bytes) -> list[tuple[str, bytes]]:
    return [(k, value if k == name else v) for k, v in headers]


KEY, VALUE, HEADERS = good_message()


@pytest.mark.parametrize(
    ("value", "headers", "reason"),
    [
        (b"\x00\xff garbage", None, "missing header 'es-event-type'"),
        (b'{"a": 1}', [("type", b"OrderPlaced")], "missing header 'es-event-type'"),
        (VALUE, without(HEADERS, "es-position"), "missing header 'es-position'"),
        (VALUE, without(HEADERS, "es-occurred-at"), "missing header 'es-occurred-at'"),
        (VALUE, replaced(HEADERS, "es-version", b"three"), "malformed"),
        (VALUE, replaced(HEADERS, "es-position", b""), "malformed"),
        (VALUE, replaced(HEADERS, "es-event-id", b"not-a-uuid"), "malformed"),
        (VALUE, replaced(HEADERS, "es-occurred-at", b"yesterday"), "malformed"),
        (VALUE, replaced(HEADERS, "es-event-type", b"\xff\xfe"), "malformed"),
        (b"\xc3\x28 not utf-8", HEADERS, "malformed"),
        (None, HEADERS, "no value"),
        (VALUE, replaced(HEADERS, "content-type", b"application/avro"), "content-type"),
        (
            VALUE,
            replaced(HEADERS, "es-occurred-at", b"2025-03-04T05:06:07.890123"),
            "no time zone",
        ),
    ],
    ids=[
        "garbage-no-headers",
        "foreign-headers",
        "no-position",
        "no-occurred-at",
        "bad-version",
        "empty-position",
        "bad-event-id",
        "bad-occurred-at",
        "type-not-utf8",
        "value-not-utf8",
        "tombstone",
        "not-json-content",
        "naive-occurred-at",
    ],
)
def test_a_message_that_is_not_an_event_is_a_decode_error_naming_where_it_is(
    value: bytes | None, headers: list[tuple[str, bytes]] | None, reason: str
) -> None:
    with pytest.raises(DecodeError) as caught:
        wire.decode("shop.order", 4, 1234, KEY, value, headers)
    error = caught.value
    assert (error.topic, error.partition, error.offset) == ("shop.order", 4, 1234)
    assert reason in str(error)
    assert "topic='shop.order'" in str(error)
    assert "partition=4" in str(error)
    assert "offset=1234" in str(error)


# -- what another client reads off the topic ------------------------------------------


def kcat(servers: str, topic: str, partition: int, offset: int, *args: str) -> bytes:
    return subprocess.run(
        [
            "kcat",
            "-C",
            "-b",
            servers,
            "-X",
            "isolation.level=read_committed",
            "-t",
            topic,
            "-p",
            str(partition),
            "-o",
            str(offset),
            "-c",
            "1",
            "-e",
            *args,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout


def expected_headers(r: StoredEvent, store_id: str) -> list[tuple[str, str]]:
    """The headers docs/wire-format.md promises, in its order, built from the store's row."""
    meta = json.loads(r.metadata)
    headers = [
        ("content-type", "application/json"),
        ("es-event-type", r.event_type),
        ("es-schema-version", str(r.schema_version)),
        ("es-event-id", str(r.event_id)),
        ("es-aggregate-type", r.aggregate_type),
        ("es-aggregate-id", r.aggregate_id),
        ("es-version", str(r.version)),
        ("es-position", str(r.position)),
        ("es-occurred-at", r.occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")),
    ]
    if "correlation_id" in meta:
        headers.append(("es-correlation-id", meta["correlation_id"]))
    if "causation_id" in meta:
        headers.append(("es-causation-id", meta["causation_id"]))
    headers.append(("es-store", store_id))
    return headers


@pytest.mark.kafka
def test_kcat_reads_the_documented_format_byte_for_byte(
    kafka_store: EventStore, kafka_config: KafkaConfig, kafka_servers: str
) -> None:
    store = kafka_store
    order = BusOrder.place("ordre-Zoë-1", customer="Zoë")
    order.add("sku-€", 2)
    Repository(store, BusOrder).save(order)
    customer = BusCustomer("klant-1")
    with caused_by(store.read_events()[1]):
        customer.trigger(BusCustomerRegistered(name='A "quoted" name, with = and €'))
    Repository(store, BusCustomer).save(customer)
    with Relay(store, kafka_config) as relay:
        assert relay.run(until_caught_up=True) == 3

    topics = [store.topic_for("order"), store.topic_for("customer")]
    located = {d.position: d for d in read_committed(kafka_servers, topics)}
    stored = store.read_log()
    assert sorted(located) == [r.position for r in stored]
    for r in stored:
        where = located[r.position]
        topic = f"{store.context}.{r.aggregate_type}"
        assert where.topic == topic

        # Raw bytes: lengths first, then key and value exactly as on the broker.
        raw = kcat(kafka_servers, topic, where.partition, where.offset, "-f", "%K %S %T\n%k%s")
        first, _, rest = raw.partition(b"\n")
        key_len, value_len, timestamp = (int(x) for x in first.split())
        key, value = rest[:key_len], rest[key_len : key_len + value_len]
        assert len(rest) == key_len + value_len
        assert key == r.aggregate_id.encode("utf-8")
        assert value == r.payload.encode("utf-8")
        assert json.loads(value) == json.loads(r.payload)
        assert timestamp == (r.occurred_at - EPOCH) // timedelta(milliseconds=1)

        # Headers (names and values, in order) and the timestamp type.
        message = json.loads(kcat(kafka_servers, topic, where.partition, where.offset, "-J"))
        flat = message["headers"]
        headers = list(zip(flat[::2], flat[1::2], strict=True))
        assert headers == expected_headers(r, store.identity())
        assert message["tstype"] == "create"
        assert message["ts"] == timestamp

    # The third event was caused by the second: both ids travel in headers.
    third = dict(expected_headers(stored[2], store.identity()))
    assert third["es-causation-id"] == str(stored[1].event_id)
    assert third["es-correlation-id"] == str(stored[1].event_id)
    assert "es-causation-id" not in dict(expected_headers(stored[0], store.identity()))


def _relayed(original: StoredEvent) -> StoredEvent:
    """`original` as the relay publishes it (with the store's id) and a consumer reads it."""
    key, value, headers, _ = wire.encode(original, store_id="store-1")
    return wire.decode("ctx.order", 0, 0, key, value, as_received(headers))


def test_an_event_that_is_its_own_correlation_id_reads_back_the_same(
    sqlite_store_factory: Callable[..., EventStore],
) -> None:
    store = sqlite_store_factory()
    Repository(store, BusOrder).save(BusOrder.place("o-1"))
    [original] = store.read_log()
    _, _, headers, _ = wire.encode(original, store_id="store-1")
    assert [name for name, _ in headers][9:] == ["es-correlation-id", "es-store"]
    decoded = _relayed(original)
    assert decoded == original
    event = store.codec.decode(decoded)
    assert (event.correlation_id, event.causation_id) == (event.event_id, None)
    assert event == store.codec.decode(original)


def test_a_read_never_gives_one_events_ids_to_another_with_the_same_metadata(
    sqlite_store_factory: Callable[..., EventStore],
) -> None:
    store = sqlite_store_factory()
    Repository(store, BusOrder).save(BusOrder.place("o-1"), BusOrder.place("o-2"))
    first, second = store.read_log()
    read_first = _relayed(first)
    # Another event that names the first as its correlation id, with the very
    # same metadata text, decoded before the first one is.
    correlated = second._replace(metadata=read_first.metadata)
    event = store.codec.decode(correlated)
    assert event.event_id == second.event_id
    assert (event.correlation_id, event.causation_id) == (first.event_id, None)
    again = store.codec.decode(read_first)
    assert (again.event_id, again.correlation_id) == (first.event_id, first.event_id)


def test_messages_read_but_never_decoded_leave_a_bounded_trace(
    sqlite_store_factory: Callable[..., EventStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = sqlite_store_factory()
    Repository(store, BusOrder).save(*(BusOrder.place(f"o-{i}") for i in range(10)))
    monkeypatch.setattr(wire, "SELF_CORRELATED_LIMIT", 3)
    wire.SELF_CORRELATED.clear()
    records = [_relayed(original) for original in store.read_log()]
    assert len(wire.SELF_CORRELATED) <= 3
    for original, decoded in zip(store.read_log(), records, strict=True):
        assert store.codec.decode(decoded) == store.codec.decode(original)
