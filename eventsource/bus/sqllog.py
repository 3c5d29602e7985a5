"""`LogConsumer` on event stores' own SQL logs: the embedded mode, no Kafka.

Topic `<context>.<aggregate type>` is the events of that aggregate type in the
store of that context, as a single partition whose offsets are global
positions. Positions follow commit order, so reading "after the last
position seen" never skips an event that committed late.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping

from sqlalchemy import func, select

from eventsource.bus.base import (
    LogMessage,
    OnAssign,
    OnRevoke,
    PartitionLag,
    PositionFilter,
    StartAt,
    TopicPartition,
)
from eventsource.bus.foreign import ForeignTopic
from eventsource.errors import ConfigurationError
from eventsource.store import schema
from eventsource.store.engine import read_transaction
from eventsource.store.eventstore import EventStore

log = logging.getLogger(__name__)
_new = tuple.__new__
_COUNT_BELOW = 10_000  # lag is exact within this many positions of the end


def split_topic(topic: str) -> tuple[str, str]:
    """`"orders.order"` -> `("orders", "order")`."""
    context, dot, aggregate_type = topic.partition(".")
    if not dot or not context or not aggregate_type:
        raise ConfigurationError(f"topic {topic!r} is not of the form <context>.<aggregate type>")
    return context, aggregate_type


class SqlLogConsumer:
    """Reads topics from the event stores of their contexts.

    `stores` maps context names to their `EventStore`; a topic of a context
    without a store is a configuration error naming what is missing.
    """

    def __init__(self, stores: Mapping[str, EventStore], *, poll_interval: float = 0.05) -> None:
        self.stores = dict(stores)
        self.poll_interval = poll_interval
        self._next: dict[TopicPartition, int] = {}
        self._filter = PositionFilter()
        self._turn = 0

    def _source(self, topic: str) -> tuple[EventStore, str]:
        if isinstance(topic, ForeignTopic):
            raise ConfigurationError(
                f"topic {str(topic)!r} is a foreign topic: it is read from Kafka only (the"
                " embedded log holds the stores' own events); set"
                " EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS"
            )
        context, aggregate_type = split_topic(topic)
        store = self.stores.get(context)
        if store is None:
            known = ", ".join(sorted(self.stores)) or "none"
            raise ConfigurationError(
                f"topic {topic!r} belongs to context {context!r}, whose event store is not"
                f" configured (known: {known}); set EVENTSOURCE_STORES to a JSON object"
                f' such as {{"{context}": "sqlite:///{context}.db"}}'
            )
        return store, aggregate_type

    def subscribe(self, topics: Iterable[str], on_assign: OnAssign, on_revoke: OnRevoke) -> None:
        """Consume `topics`; `on_assign` says where each assigned partition resumes."""
        partitions = [TopicPartition(topic, 0) for topic in topics]
        for tp in partitions:
            self._source(tp.topic)
        starts = on_assign(partitions)
        self.assign({tp: starts.get(tp, StartAt(0)) for tp in partitions})

    def assign(self, positions: Mapping[TopicPartition, StartAt]) -> None:
        """Consume exactly these partitions from these offsets (no group)."""
        for tp, start in positions.items():
            if tp.partition != 0:
                raise ConfigurationError(f"the embedded log has only partition 0, not {tp}")
            self._source(tp.topic)
            self.seek(tp, start)

    def seek(self, partition: TopicPartition, start: StartAt) -> None:
        """Move an assigned partition back or forward (after a rejected commit)."""
        self._next[partition] = max(start.offset, 0)
        self._filter.reset(partition, start.last_position)

    def assignment(self) -> list[TopicPartition]:
        """The partitions this consumer currently reads."""
        return sorted(self._next)

    def partitions(self, topic: str) -> int:
        """How many partitions `topic` has (0 if it does not exist yet)."""
        self._source(topic)
        return 1

    def poll(self, max_messages: int, timeout: float) -> list[LogMessage]:
        """Up to `max_messages`, waiting at most `timeout` seconds for the first."""
        deadline = time.monotonic() + timeout
        while True:
            messages = self._read(max_messages)
            if messages or time.monotonic() >= deadline:
                return messages
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))

    def _read(self, max_messages: int) -> list[LogMessage]:
        partitions = self.assignment()
        if not partitions:
            return []
        out: list[LogMessage] = []
        # Take turns so that one busy topic cannot starve the others.
        self._turn = (self._turn + 1) % len(partitions)
        for tp in partitions[self._turn :] + partitions[: self._turn]:
            room = max_messages - len(out)
            if room <= 0:
                break
            store, aggregate_type = self._source(tp.topic)
            records = store.read_log(self._next[tp] - 1, room, aggregate_types=[aggregate_type])
            if not records:
                continue
            topic = tp.topic
            # Positions ascend within a read: if the first one is new, all are.
            if self._filter.accept_position(tp, records[0].position, records[0].position):
                self._filter.reset(tp, records[-1].position)
                # The tuples themselves: `LogMessage(...)` is a Python-level call each.
                out.extend([_new(LogMessage, (topic, 0, r[0], r, None)) for r in records])
            else:
                for record in records[1:]:
                    message = LogMessage(topic, 0, record.position, record)
                    if self._filter.accept(message):
                        out.append(message)
            self._next[tp] = records[-1].position + 1
        return out

    def lag(self) -> dict[TopicPartition, PartitionLag]:
        """Position and end of every assigned partition (one round trip)."""
        out: dict[TopicPartition, PartitionLag] = {}
        for tp in self.assignment():
            store, aggregate_type = self._source(tp.topic)
            position = self._next[tp]
            events = schema.events
            with read_transaction(store.engine) as conn:
                head = store.head_position(aggregate_types=[aggregate_type], connection=conn)
                # Positions have gaps (other aggregate types, rolled-back appends):
                # count the events left when few are, bound them when many are,
                # rather than count a million rows for each progress report.
                remaining = max(0, head + 1 - position)
                if 0 < remaining <= _COUNT_BELOW:
                    remaining = conn.execute(
                        select(func.count()).where(
                            events.c.aggregate_type == aggregate_type,
                            events.c.global_position >= position,
                        )
                    ).scalar_one()
            end = max(head + 1, position) if remaining else position
            out[tp] = PartitionLag(position, end, int(remaining))
        return out

    def ends(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, StartAt]:
        """Where a consumer that skips what each partition holds so far starts:
        the partition's end offset and the global position of its last event."""
        out: dict[TopicPartition, StartAt] = {}
        for tp in partitions:
            store, aggregate_type = self._source(tp.topic)
            head = store.head_position(aggregate_types=[aggregate_type])
            out[tp] = StartAt(head + 1, head)
        return out

    def caught_up(self) -> bool:
        """Whether every assigned partition has been read to its end."""
        return all(p.lag == 0 for p in self.lag().values())

    def close(self) -> None:
        """Nothing to release: the stores belong to the caller."""

    def __enter__(self) -> SqlLogConsumer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
