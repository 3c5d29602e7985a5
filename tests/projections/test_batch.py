"""A worker's batch after a rebalance: only the partitions it still holds are
folded, and each moves to after its last message, whether the poll gave a
list (the stores' logs) or a Kafka `Polled` batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from eventsource.bus.base import LogMessage, TopicPartition
from eventsource.bus.polled import Polled, ends_of
from eventsource.events.records import StoredEvent
from eventsource.projections.batch import Batches
from eventsource.projections.positions import Position

HELD = TopicPartition("shop.order", 0)
REVOKED = TopicPartition("shop.order", 1)


def message(tp: TopicPartition, offset: int, position: int) -> LogMessage:
    record = StoredEvent(
        position,
        "order:o-1",
        "o-1",
        "order",
        1,
        "Placed",
        1,
        uuid4(),
        datetime.now(UTC),
        "{}",
        "{}",
    )
    return LogMessage(tp.topic, tp.partition, offset, record)


MESSAGES = [message(HELD, 7, 20), message(REVOKED, 3, 21), message(HELD, 8, 25)]


def as_list(messages: list[LogMessage]) -> Sequence[LogMessage]:
    return messages


def as_polled(messages: list[LogMessage]) -> Sequence[LogMessage]:
    return Polled(messages, lambda m: m, ends_of(messages))


BatchOf = Callable[[list[LogMessage]], Sequence[LogMessage]]


@pytest.fixture(params=[as_list, as_polled], ids=["list", "polled"])
def batch_of(request: pytest.FixtureRequest) -> BatchOf:
    return request.param  # type: ignore[no-any-return]


def batches() -> Batches:
    # Choosing messages and their moves reads only the held positions.
    return Batches(None, {HELD: Position(offset=7, last_position=19, revision=1)})  # type: ignore[arg-type]


def test_only_the_messages_of_partitions_still_held_are_kept(batch_of: BatchOf) -> None:
    owned = batches().owned(batch_of(MESSAGES))
    assert list(owned) == [MESSAGES[0], MESSAGES[2]]


def test_a_batch_of_held_partitions_only_is_kept_as_it_is(batch_of: BatchOf) -> None:
    batch = batch_of([MESSAGES[0], MESSAGES[2]])
    assert batches().owned(batch) is batch


def test_a_partition_moves_to_after_its_last_message_and_its_highest_position(
    batch_of: BatchOf,
) -> None:
    held = Position(offset=7, last_position=19, revision=1)
    moves = batches().moves(batch_of([MESSAGES[0], MESSAGES[2]]))
    assert moves == {HELD: (held, 9, 25)}
