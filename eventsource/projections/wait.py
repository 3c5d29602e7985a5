"""Read-your-writes: wait until a projection has applied a store position.

A caller that saved events holds the global position `Repository.save`
returned. The projection has applied everything up to it when, for each of
its topics from that store, no event of the topic at or below the position
sits above what the projection applied from the event's partition. On the
embedded log a topic is one partition; on Kafka an event's partition follows
from its aggregate id (the producer's murmur2 partitioner), and the
partition count is the topic's own, asked of the broker.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, and_, select

from eventsource.bus.foreign import ForeignTopic
from eventsource.bus.partitioner import partition_for
from eventsource.bus.sqllog import split_topic
from eventsource.errors import ConfigurationError, EventSourceError
from eventsource.projections.base import Consumer
from eventsource.projections.tables import positions
from eventsource.store import schema
from eventsource.store.engine import read_transaction
from eventsource.store.eventstore import EventStore

if TYPE_CHECKING:
    from eventsource.bus.config import KafkaConfig


class WaitTimeout(EventSourceError, TimeoutError):
    """The projection did not apply the position within the timeout."""

    def __init__(self, projection: str, position: int, timeout: float, behind: str) -> None:
        self.projection = projection
        self.position = position
        self.timeout = timeout
        self.behind = behind
        super().__init__(
            f"projection {projection!r} had not applied global position {position}"
            f" after {timeout:.1f} s: {behind}"
        )


@dataclass(frozen=True)
class _Behind:
    """The first event found that the projection has not applied yet."""

    topic: str
    partition: int
    event_position: int
    applied: int | None  # what it applied from that partition (None: never assigned)

    def __str__(self) -> str:
        done = "nothing" if self.applied is None else f"up to position {self.applied}"
        return (
            f"{self.topic}[{self.partition}] holds event {self.event_position},"
            f" and the projection has applied {done} there"
        )


def wait_for(
    projection: type[Consumer],
    position: int,
    *,
    store: EventStore,
    views: Engine | None = None,
    partitions: int | None = None,
    kafka: KafkaConfig | None = None,
    timeout: float = 10.0,
    poll_interval: float = 0.02,
) -> None:
    """Block until `projection` has applied every event of `store` up to `position`.

    `views` is the projection's database (default: the store's own, where a
    context's projections usually live). On Kafka, pass `kafka` and the
    topics' partition counts are asked of the broker (or give `partitions`);
    without either, the log is the embedded one (one partition per topic).
    Raises `WaitTimeout`, saying what it still waits for; a position beyond
    the end of the store's log is a `ConfigurationError`.
    """
    if position < 0:
        raise ConfigurationError(f"a global position is 0 or more, not {position}")
    head = store.head_position()
    if position > head:
        raise ConfigurationError(
            f"position {position} is beyond the end of the log of context {store.context!r}"
            f" (its last position is {head})"
        )
    engine = views or store.engine
    deadline = time.monotonic() + timeout
    # Foreign topics have no store positions to wait for.
    topics = [
        t
        for t in projection.topics
        if not isinstance(t, ForeignTopic) and split_topic(t)[0] == store.context
    ]
    counts = _Partitions(topics, partitions, kafka)
    while True:
        behind = _first_behind(
            projection.name, topics, position, store=store, views=engine, counts=counts
        )
        if behind is None:
            return
        if time.monotonic() >= deadline:
            raise WaitTimeout(projection.name, position, timeout, str(behind))
        time.sleep(poll_interval)


def applied(
    name: str,
    topics: list[str],
    position: int,
    *,
    store: EventStore,
    views: Engine,
    partitions: int = 1,
) -> bool:
    """Whether the consumer `name` has applied `store`'s events of `topics` up to `position`."""
    counts = _Partitions(topics, partitions, None)
    return _first_behind(name, topics, position, store=store, views=views, counts=counts) is None


class _Partitions:
    """Each topic's partition count: given, asked of the broker, or 1 (embedded)."""

    def __init__(self, topics: list[str], given: int | None, kafka: KafkaConfig | None) -> None:
        self.given = given
        self.kafka = kafka
        self.known: dict[str, int] = {}
        self.topics = topics

    def of(self, topic: str) -> int | None:
        """The count, or None if the topic is not on Kafka yet (nothing relayed)."""
        if self.given is not None:
            return self.given
        if self.kafka is None:
            return 1
        if topic not in self.known:
            from eventsource.bus.admin import TopicAdmin

            count = TopicAdmin(self.kafka).partitions(self.kafka.physical(topic))
            if count == 0:
                return None
            self.known[topic] = count
        return self.known[topic]


def _first_behind(
    name: str,
    topics: list[str],
    position: int,
    *,
    store: EventStore,
    views: Engine,
    counts: _Partitions,
) -> _Behind | None:
    with read_transaction(views) as conn:
        done = _applied_positions(conn, name)
    with read_transaction(store.engine) as conn:
        for topic in topics:
            _, aggregate_type = split_topic(topic)
            count = counts.of(topic)
            floor = (
                0
                if count is None
                else min((done.get((topic, p), 0) for p in range(count)), default=0)
            )
            if floor >= position:
                continue
            rows = conn.execute(
                select(schema.events.c.aggregate_id, schema.events.c.global_position)
                .where(
                    and_(
                        schema.events.c.aggregate_type == aggregate_type,
                        schema.events.c.global_position > floor,
                        schema.events.c.global_position <= position,
                    )
                )
                .order_by(schema.events.c.global_position)
            )
            for aggregate_id, event_position in rows:
                if count is None:  # not relayed yet: nothing of it can be applied
                    return _Behind(topic, 0, event_position, None)
                p = partition_for(aggregate_id, count) if count > 1 else 0
                if done.get((topic, p), 0) < event_position:
                    return _Behind(topic, p, event_position, done.get((topic, p)))
    return None


def _applied_positions(conn: Connection, name: str) -> dict[tuple[str, int], int]:
    rows = conn.execute(
        select(positions.c.topic, positions.c.partition, positions.c.last_position).where(
            positions.c.projection == name
        )
    )
    return {(r[0], r[1]): int(r[2]) for r in rows}
