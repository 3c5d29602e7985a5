"""A `Polled` batch reads like the list of its messages, whichever way it is read."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from eventsource.bus.base import LogMessage, TopicPartition
from eventsource.bus.polled import Polled, ends_of
from eventsource.errors import DecodeError
from eventsource.events.records import StoredEvent


def record(position: int) -> StoredEvent:
    return StoredEvent(
        position,
        "order:1",
        "1",
        "order",
        position,
        "shop.OrderPlaced",
        1,
        uuid4(),
        datetime(2026, 1, 1, tzinfo=UTC),
        "{}",
        "{}",
    )


MESSAGES = [
    LogMessage("shop.order", 0, 10, record(3)),
    LogMessage("shop.order", 1, 4, record(4)),
    LogMessage("shop.order", 0, 11, None, DecodeError("garbage")),
    LogMessage("shop.order", 0, 12, record(7)),
    LogMessage("shop.order", 1, 5, record(9)),
]


def polled() -> Polled:
    # Entries as a consumer might keep them: here, each message's index.
    return Polled(list(range(len(MESSAGES))), MESSAGES.__getitem__, ends_of(MESSAGES))


def test_a_polled_batch_reads_as_the_list_of_its_messages() -> None:
    batch = polled()
    assert len(batch) == 5
    assert bool(batch)
    assert not Polled([], MESSAGES.__getitem__, {})
    assert list(batch) == MESSAGES
    assert batch == MESSAGES
    assert batch[0] == MESSAGES[0]
    assert batch[-1] == MESSAGES[-1]
    assert list(reversed(batch)) == MESSAGES[::-1]
    assert batch[1:3] == MESSAGES[1:3]
    assert batch[:0] == []
    assert batch[:5] is batch  # the whole batch stays a batch
    assert batch.index(MESSAGES[3]) == 3
    assert MESSAGES[2] in batch
    got: list[LogMessage] = []
    got += batch
    assert got == MESSAGES


def test_a_batch_leaves_each_partition_after_its_last_offset_at_its_highest_position() -> None:
    assert ends_of(MESSAGES) == {
        TopicPartition("shop.order", 0): (13, 7),
        TopicPartition("shop.order", 1): (6, 9),
    }
    # A message with no record (not an event) moves the offset, not the position.
    assert ends_of(MESSAGES[:3])[TopicPartition("shop.order", 0)] == (12, 3)
    assert polled().ends == ends_of(MESSAGES)
