"""Reading a foreign record: its value, key, time and id; what is refused."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import orjson
import pytest

from eventsource import ConfigurationError, DecodeError, Event, ForeignTopic
from eventsource.events.codec import EventCodec


class Contact(Event):
    event_type = "bus.foreign_contact"

    name: str
    email: str = ""


MILLIS = 1_767_268_800_000  # 2026-01-01T12:00:00Z
AT = datetime(2026, 1, 1, 12, tzinfo=UTC)


def read(topic: ForeignTopic, value: object, key: bytes | None = b"c-1", *, raw: bool = False):
    body = value if raw else orjson.dumps(value)
    return topic.record(str(topic), 2, 17, key, body, MILLIS)  # type: ignore[arg-type]


def test_a_keyed_json_record_is_an_event_of_the_model() -> None:
    contacts = ForeignTopic("crm.contacts", Contact)
    record = read(contacts, {"name": "Ada", "email": "ada@example.com", "extra": [1]})
    assert record is not None
    event = EventCodec().decode(record)
    assert isinstance(event, Contact)
    assert (event.name, event.email) == ("Ada", "ada@example.com")
    assert event.aggregate_id == "c-1"
    assert event.aggregate_type == "crm.contacts"
    assert event.occurred_at == AT
    assert (event.version, event.position, event.correlation_id) == (0, 0, None)
    again = read(contacts, {"name": "Ada"})
    assert again is not None
    assert again.event_id == record.event_id  # one record, one id, however often it is read
    other = contacts.record("crm.contacts", 2, 18, b"c-1", b'{"name": "Ada"}', MILLIS)
    assert other is not None
    assert other.event_id != record.event_id


def test_key_and_time_fields() -> None:
    contacts = ForeignTopic("crm.contacts", Contact, key="id", time="updated_at")
    record = read(contacts, {"id": 42, "name": "Ada", "updated_at": "2026-02-03T04:05:06"}, None)
    assert record is not None
    assert record.aggregate_id == "42"
    assert record.occurred_at == datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)  # no zone: UTC
    millis = read(contacts, {"id": "x", "name": "Ada", "updated_at": MILLIS})
    assert millis is not None
    assert millis.occurred_at == AT


def test_an_unkeyed_record_has_no_aggregate_id_and_its_partition_for_a_stream() -> None:
    record = read(ForeignTopic("crm.contacts", Contact), {"name": "Ada"}, None)
    assert record is not None
    assert record.aggregate_id == ""
    assert record.stream_id == "crm.contacts:@2"


def test_the_connect_json_envelope_is_unwrapped() -> None:
    envelope = {"schema": {"type": "struct", "fields": []}, "payload": {"name": "Ada"}}
    auto = read(ForeignTopic("crm.contacts", Contact), envelope)
    assert auto is not None
    assert orjson.loads(auto.payload) == {"name": "Ada"}
    kept = read(ForeignTopic("crm.contacts", Contact, envelope=False), envelope)
    assert kept is not None
    assert "payload" in orjson.loads(kept.payload)
    with pytest.raises(DecodeError, match="not a Connect JSON envelope"):
        read(ForeignTopic("crm.contacts", Contact, envelope=True), {"name": "Ada"})


def test_metadata_named_keys_never_reach_the_model() -> None:
    record = read(
        ForeignTopic("crm.contacts", Contact),
        {"name": "Ada", "version": "v2", "occurred_at": "yesterday", "event_id": 3},
    )
    assert record is not None
    assert orjson.loads(record.payload) == {"name": "Ada"}
    assert EventCodec().decode(record).version == 0


def test_a_tombstone_is_skipped() -> None:
    assert ForeignTopic("crm.contacts", Contact).record("crm.contacts", 0, 1, b"k", None, 0) is None


@pytest.mark.parametrize(
    ("topic", "value", "message"),
    [
        (ForeignTopic("t", Contact), b"{nope", "not JSON"),
        (ForeignTopic("t", Contact), b"[1, 2]", "a JSON list, not an object"),
        (ForeignTopic("t", Contact, key="id"), b'{"name": "x"}', "no key field 'id'"),
        (ForeignTopic("t", Contact, key="id"), b'{"id": {"a": 1}}', "no key field 'id'"),
        (ForeignTopic("t", Contact, time="at"), b'{"name": "x"}', "no time field 'at'"),
        (ForeignTopic("t", Contact, time="at"), b'{"at": "soon"}', "not ISO 8601"),
        (ForeignTopic("t", Contact, time="at"), b'{"at": 1e300}', "out of range"),
    ],
)
def test_malformed_records_are_decode_errors_naming_where(topic, value, message) -> None:
    with pytest.raises(DecodeError, match=message) as raised:
        topic.record("t", 1, 99, None, value, MILLIS)
    assert (raised.value.topic, raised.value.partition, raised.value.offset) == ("t", 1, 99)
    assert raised.value.event_type == "bus.foreign_contact"


def test_a_record_that_does_not_validate_fails_in_the_codec() -> None:
    record = read(ForeignTopic("crm.contacts", Contact), {"email": "no name"})
    assert record is not None
    with pytest.raises(DecodeError, match="name"):
        EventCodec().decode(record)


def test_a_foreign_topic_is_its_name_and_keeps_its_format() -> None:
    contacts = ForeignTopic("dbserver1.inventory.customers", Contact, key="id")
    assert contacts == "dbserver1.inventory.customers"
    assert {contacts: 1}["dbserver1.inventory.customers"] == 1
    copied = pickle.loads(pickle.dumps(contacts))
    assert isinstance(copied, ForeignTopic)
    assert (copied.model, copied.key) == (Contact, "id")
    assert repr(contacts) == "ForeignTopic('dbserver1.inventory.customers', Contact)"


@pytest.mark.parametrize("name", ["", "has space", "x" * 300, ".."])
def test_names_kafka_refuses_are_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match="not a Kafka topic name"):
        ForeignTopic(name, Contact)


def test_the_model_must_be_an_event() -> None:
    with pytest.raises(ConfigurationError, match="Event subclass"):
        ForeignTopic("crm.contacts", dict)  # type: ignore[arg-type]
