"""One poll's messages, each made into a `LogMessage` only when it is read.

A worker holds a batch of thousands of messages from the poll until the
commit. Held as objects (a `LogMessage`, its `StoredEvent`, its `UUID`), every
one of them was promoted to the garbage collector's oldest generation, and
its collections walk every object the process holds: in a Kafka fold they
took a sixth of the time. A `Polled` batch holds plain tuples of text,
numbers and bytes instead, which the collector stops tracking; a message
made from one while folding is dropped before the collector sees it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, overload

from eventsource.bus.base import LogMessage, TopicPartition

# Each partition's next offset after the batch and the highest global position in it.
Ends = dict[TopicPartition, tuple[int, int]]


class Polled(Sequence[LogMessage]):
    """What a log consumer's `poll` read: a sequence of `LogMessage`.

    `entries` are what `make` turns into messages, one each, in order;
    `ends` says where the batch leaves each of its partitions (as `ends_of`
    would find by reading every message). Reading a message twice makes it
    twice: the messages are equal, not the same objects.
    """

    __slots__ = ("_entries", "_make", "ends")

    def __init__(self, entries: list[Any], make: Callable[[Any], LogMessage], ends: Ends) -> None:
        self._entries = entries
        self._make = make
        self.ends = ends

    def __len__(self) -> int:
        return len(self._entries)

    @overload
    def __getitem__(self, index: int) -> LogMessage: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[LogMessage]: ...

    def __getitem__(self, index: int | slice) -> LogMessage | Sequence[LogMessage]:
        if isinstance(index, slice):
            count = len(self._entries)
            if index.indices(count) == (0, count, 1):
                return self  # the whole batch (a worker's usual first attempt)
            return [self._make(entry) for entry in self._entries[index]]
        return self._make(self._entries[index])

    def __iter__(self) -> Iterator[LogMessage]:
        return map(self._make, self._entries)

    def __reversed__(self) -> Iterator[LogMessage]:
        return map(self._make, reversed(self._entries))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to lists, which have none

    def __repr__(self) -> str:
        return f"Polled({list(self)!r})"


def ends_of(messages: Sequence[LogMessage]) -> Ends:
    """Each partition's next offset after `messages` and their highest global position."""
    if isinstance(messages, Polled):
        return messages.ends
    ends: Ends = {}
    for message in messages:
        record = message.record
        position = record.position if record is not None else 0
        extend(ends, message.topic_partition, message.offset, position)
    return ends


def extend(ends: Ends, tp: TopicPartition, offset: int, position: int) -> None:
    """Move `ends` on `tp` to after `offset`, keeping the highest position."""
    end = ends.get(tp)
    ends[tp] = (offset + 1, max(position, end[1]) if end is not None else position)
