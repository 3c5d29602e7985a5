"""The relay's fast read produces exactly the messages the wire format defines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from eventsource import Aggregate, Event, EventStore, Repository, caused_by, on
from eventsource.bus import wire
from eventsource.bus.outbox import read_messages


class OutboxNoted(Event):
    event_type = "outbox.Noted"
    text: str


class OutboxNote(Aggregate, type_name="outbox_note"):
    count: int = 0

    @on(OutboxNoted)
    def _noted(self, event: OutboxNoted) -> None:
        self.count += 1


def test_fast_read_equals_wire_encode_of_the_stored_record(store: EventStore) -> None:
    notes = Repository(store, OutboxNote)
    first = OutboxNote("n-1")
    first.trigger(OutboxNoted(text='héllo "quoted" ✓'))
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
        key, value, headers, timestamp = wire.encode(record)
        # Text goes to librdkafka as it is, which writes it as UTF-8.
        sent = [(name, v.encode() if isinstance(v, str) else v) for name, v in message.headers]
        assert (message.key.encode(), message.value.encode(), sent, message.timestamp) == (
            key,
            value,
            headers,
            timestamp,
        )
        assert message.position == record.position
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
    assert message.timestamp == int(record.occurred_at.timestamp() * 1000)
    assert record.occurred_at.tzinfo in (UTC, UTC)
