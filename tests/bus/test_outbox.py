"""The relay's fast read produces exactly the messages the wire format defines."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import event

from eventsource import Aggregate, Event, EventStore, Repository, StoredEvent, caused_by, on
from eventsource.bus import wire
from eventsource.bus.outbox import OutgoingMessage, read_messages
from eventsource.errors import StoreError


class OutboxNoted(Event):
    event_type = "outbox.Noted"
    text: str


class OutboxNote(Aggregate, type_name="outbox_note"):
    count: int = 0

    @on(OutboxNoted)
    def _noted(self, event: OutboxNoted) -> None:
        self.count += 1


def assert_sent_as_encoded(
    record: StoredEvent, message: OutgoingMessage, store_id: str | None = None
) -> None:
    """The relay's message for `record` is what `wire.encode` makes of it."""
    identity = store_id or str(message.headers[wire.H_STORE])
    key, value, headers, timestamp = wire.encode(record, identity)
    # Text goes to librdkafka as it is, which writes it as UTF-8.
    sent = [(name, v.encode() if isinstance(v, str) else v) for name, v in message.headers.items()]
    assert (message.key.encode(), message.value.encode(), sent, message.timestamp) == (
        key,
        value,
        headers,
        timestamp,
    )
    assert message.position == record.position


def note_record(
    note_id: str,
    *,
    occurred_at: datetime = datetime(2026, 11, 26, 4, 30, tzinfo=UTC),
    metadata: str = "{}",
) -> StoredEvent:
    """A record of the first event of note `note_id`, ready for `append_records`."""
    return StoredEvent(
        position=0,
        stream_id=f"outbox_note:{note_id}",
        aggregate_id=note_id,
        aggregate_type="outbox_note",
        version=1,
        event_type=OutboxNoted.event_type,
        schema_version=1,
        event_id=uuid4(),
        occurred_at=occurred_at,
        payload='{"text":"t"}',
        metadata=metadata,
    )


def test_fast_read_equals_wire_encode_of_the_stored_record(store: EventStore) -> None:
    notes = Repository(store, OutboxNote)
    # Everything JSON escapes on the way through the database and back.
    first = OutboxNote('n-"1"\\')
    first.trigger(OutboxNoted(text='héllo "quoted" ✓ \\ / \n\t\x01\x7f 😀 \u2028'))
    notes.save(first)
    cause = store.read_events()[0]
    with caused_by(cause):
        others = [OutboxNote(f"n-{i}") for i in range(2, 30)]
        for note in others:
            note.trigger(OutboxNoted(text="x" * 10))
    notes.save(*others)

    records = store.read_log(0, 100)
    messages = read_messages(store, 0, 100)
    assert len(messages) == len(records) == 29
    for record, message in zip(records, messages, strict=True):
        assert_sent_as_encoded(record, message)
    assert read_messages(store, records[10].position, 5)[0].position == records[11].position


def test_fast_read_keeps_microseconds_and_milliseconds_exact(store: EventStore) -> None:
    notes = Repository(store, OutboxNote)
    note = OutboxNote("n-time")
    note.trigger(OutboxNoted(text="t"))
    notes.save(note)
    record = store.read_log(0, 1)[0]
    message = read_messages(store, 0, 1)[0]
    headers = dict(message.headers)
    occurred = datetime.fromisoformat(str(headers[wire.H_OCCURRED]))
    assert occurred == record.occurred_at
    assert occurred.utcoffset() == timedelta(0)
    assert message.timestamp == wire.milliseconds(record.occurred_at)
    assert record.occurred_at.tzinfo in (UTC, UTC)


def test_kafka_timestamps_are_whole_milliseconds_never_rounded_up(store: EventStore) -> None:
    # SQLite's date functions round 19:30:01.9996 to 19:30:02: the timestamp
    # must still say 19:30:01.999, as `wire.encode` does.
    moments = [
        datetime(2026, 11, 25, 19, 30, 1, micro, tzinfo=UTC)
        for micro in (0, 999, 1000, 499_999, 500_000, 999_499, 999_500, 999_999)
    ]
    records = [note_record(f"t-{i}", occurred_at=moment) for i, moment in enumerate(moments)]
    store.append_records(records)
    messages = read_messages(store, 0, 100)
    assert [m.timestamp for m in messages] == [
        (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
        for moment in moments
    ]
    stored = store.read_log(0, 100)
    assert [m.timestamp for m in messages] == [wire.encode(r)[3] for r in stored]


def test_headers_of_events_with_and_without_correlation_and_causation(
    store: EventStore,
) -> None:
    # Every combination of the optional ids: a header is there exactly when
    # its id is, in the documented order.
    ids = [uuid4(), uuid4()]
    shapes = [
        "{}",
        f'{{"correlation_id":"{ids[0]}"}}',
        f'{{"causation_id":"{ids[1]}"}}',
        f'{{"correlation_id":"{ids[0]}","causation_id":"{ids[1]}"}}',
        '{"correlation_id":null}',
        '{"correlation_id":"","causation_id":null}',
        f'{{ "causation_id" : "{ids[1]}", "correlation_id" : "{ids[0]}" }}',
    ]
    store.append_records([note_record(f"m-{i}", metadata=m) for i, m in enumerate(shapes)])
    records = store.read_log(0, 10)
    messages = read_messages(store, 0, 10)
    assert len(messages) == len(shapes)
    for record, message in zip(records, messages, strict=True):
        assert_sent_as_encoded(record, message)
    names = [list(m.headers)[9:] for m in messages]
    store_id = [wire.H_STORE]  # the store that wrote them, always last
    assert names == [
        store_id,
        [wire.H_CORRELATION, *store_id],
        [wire.H_CAUSATION, *store_id],
        [wire.H_CORRELATION, wire.H_CAUSATION, *store_id],
        store_id,
        store_id,
        [wire.H_CORRELATION, wire.H_CAUSATION, *store_id],
    ]
    assert {m.headers[wire.H_STORE] for m in messages} == {store.identity()}


def test_metadata_that_is_not_a_json_object_stops_the_read_naming_the_event(
    store: EventStore,
) -> None:
    good = OutboxNote("fine")
    good.trigger(OutboxNoted(text="ok"))
    Repository(store, OutboxNote).save(good)
    store.append_records([note_record("odd", metadata='["not", "an", "object"]')])
    first, odd = (r.position for r in store.read_log(0, 10))

    assert [m.position for m in read_messages(store, 0, 1)] == [first]
    with pytest.raises(StoreError, match=f"global position {odd} has unreadable metadata"):
        read_messages(store, 0, 10)


def test_a_batch_longer_than_sqlite_allows_a_string_is_read_row_by_row(tmp_path: Path) -> None:
    # SQLite refuses to build a string longer than its length limit (1 GB as
    # built): a batch of big events is read without the one-row JSON then.
    store = EventStore(f"sqlite:///{tmp_path / 'big.db'}", context="outbox_big")
    store.create_schema()

    @event.listens_for(store.engine, "connect")
    def limit_strings(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 100_000)

    store.engine.dispose()
    notes = Repository(store, OutboxNote)
    for i in range(12):
        note = OutboxNote(f"big-{i}")
        note.trigger(OutboxNoted(text=f"{i}" * 20_000))
        notes.save(note)

    messages = read_messages(store, 0, 100)

    records = store.read_log(0, 100)
    assert [m.position for m in messages] == [r.position for r in records]
    for record, message in zip(records, messages, strict=True):
        assert_sent_as_encoded(record, message)
    store.close()
