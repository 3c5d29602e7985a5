"""The log that projection workers consume, whatever carries it.

Two backends implement `LogConsumer`: Kafka (`bus.kafka`) and the embedded
SQL log (`bus.sqllog`), which reads an event store's global log as one
single-partition topic per aggregate type. Offsets are "the next offset to
read", as in Kafka; positions are owned by the caller (the worker stores them
with its view), never by the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from eventsource.errors import DecodeError
from eventsource.events.records import StoredEvent

log = logging.getLogger(__name__)


class TopicPartition(NamedTuple):
    """A partition of a topic; hashed for every message read, so a tuple's C hash."""

    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]"


@dataclass(frozen=True, slots=True)
class StartAt:
    """Where to resume a partition: the next offset, and the last global
    position already applied from it (for dropping duplicates)."""

    offset: int
    last_position: int = 0


class LogMessage(NamedTuple):
    """One message read from the log.

    `record` is the event it carries; when the message is not a valid event
    (garbage bytes, missing headers) `record` is None and `error` says why,
    naming topic, partition and offset, so the worker can dead-letter it.
    """

    topic: str
    partition: int
    offset: int
    record: StoredEvent | None
    error: DecodeError | None = None

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """How far a consumer is from the end of one partition.

    `position` and `end` are offsets; `lag` counts the events still to read:
    never fewer than there are, and 0 only at the end (on Kafka it also counts
    transaction markers; on the embedded log it is exact near the end and
    bounded by the positions left further away).
    """

    position: int
    end: int
    lag: int


OnAssign = Callable[[list[TopicPartition]], Mapping[TopicPartition, StartAt]]
OnRevoke = Callable[[list[TopicPartition]], None]


class LogConsumer(Protocol):
    """What a projection worker needs from a log."""

    def subscribe(self, topics: Iterable[str], on_assign: OnAssign, on_revoke: OnRevoke) -> None:
        """Consume `topics`; `on_assign` says where each assigned partition resumes."""
        ...

    def assign(self, positions: Mapping[TopicPartition, StartAt]) -> None:
        """Consume exactly these partitions from these offsets (no group)."""
        ...

    def seek(self, partition: TopicPartition, start: StartAt) -> None:
        """Move an assigned partition back or forward (after a rejected commit)."""
        ...

    def poll(self, max_messages: int, timeout: float) -> Sequence[LogMessage]:
        """Up to `max_messages`, waiting at most `timeout` seconds for the first
        (a list, or a `Polled` batch that makes each message when it is read)."""
        ...

    def assignment(self) -> list[TopicPartition]:
        """The partitions this consumer currently reads."""
        ...

    def partitions(self, topic: str) -> int:
        """How many partitions `topic` has (0 if it does not exist yet)."""
        ...

    def lag(self) -> dict[TopicPartition, PartitionLag]:
        """Position and end of every assigned partition (one round trip)."""
        ...

    def ends(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, StartAt]:
        """Where a consumer that skips what each partition holds so far starts:
        the partition's end offset and the global position of its last event."""
        ...

    def caught_up(self) -> bool:
        """Whether every assigned partition has been read to its end."""
        ...

    def close(self) -> None:
        """Release the consumer's connections; it is not used again."""
        ...


class PositionFilter:
    """Drops messages whose global position was already seen on their partition.

    The relay publishes in global order, so positions only grow within a
    partition; a message at or below the last one seen is a duplicate (Kafka's
    transaction protocol has had published anomalies that deliver one twice).
    Messages with no global position (0) always pass.
    """

    def __init__(self) -> None:
        # The last position seen per partition; a reader may test and move it
        # itself for a position above it (the common case), as `accept` would.
        self.last: dict[TopicPartition, int] = {}

    def reset(self, partition: TopicPartition, last_position: int) -> None:
        self.last[partition] = last_position

    def forget(self, partition: TopicPartition) -> None:
        self.last.pop(partition, None)

    def accept(self, message: LogMessage) -> bool:
        if message.record is None:
            return True
        return self.accept_position(
            message.topic_partition, message.record.position, message.offset
        )

    def accept_position(self, partition: TopicPartition, position: int, offset: int) -> bool:
        """`accept` for a message known by its partition, position and offset."""
        last = self.last.get(partition, 0)
        if position <= last:
            if not position:
                # A message from no store (a transform's output, a foreign
                # record) has no position to compare.
                return True
            log.warning(
                "dropping duplicate of global position %d at %s@%d (already applied up to %d)",
                position,
                partition,
                offset,
                last,
            )
            return False
        self.last[partition] = position
        return True
