"""Read-your-writes: wait until a projection has applied a store position.

A caller that saved events holds the global position `Repository.save`
returned. The projection has applied everything up to it when, for each of
its topics from that store, no event of the topic at or below the position
sits above what the projection applied from the event's partition. On the
embedded log a topic is one partition; on Kafka an event's partition follows
from its aggregate id (the producer's murmur2 partitioner).
"""

from __future__ import annotations

import time

from sqlalchemy import Connection, Engine, and_, select

from eventsource.bus.partitioner import partition_for
from eventsource.bus.sqllog import split_topic
from eventsource.errors import EventSourceError
from eventsource.projections.base import Consumer
from eventsource.projections.tables import positions
from eventsource.store import schema
from eventsource.store.engine import read_transaction
from eventsource.store.eventstore import EventStore


class WaitTimeout(EventSourceError, TimeoutError):
    """The projection did not apply the position within the timeout."""

    def __init__(self, projection: str, position: int, timeout: float) -> None:
        self.projection = projection
        self.position = position
        self.timeout = timeout
        super().__init__(
            f"projection {projection!r} had not applied global position {position}"
            f" after {timeout:.1f} s"
        )


def wait_for(
    projection: type[Consumer],
    position: int,
    *,
    store: EventStore,
    views: Engine | None = None,
    partitions: int = 1,
    timeout: float = 10.0,
    poll_interval: float = 0.02,
) -> None:
    """Block until `projection` has applied every event of `store` up to `position`.

    `views` is the projection's database (default: the store's own, where a
    context's projections usually live); `partitions` is the partition count
    of the topics on Kafka (1 on the embedded log). Raises `WaitTimeout`.
    """
    engine = views or store.engine
    deadline = time.monotonic() + timeout
    topics = [t for t in projection.topics if split_topic(t)[0] == store.context]
    while True:
        if applied(
            projection.name, topics, position, store=store, views=engine, partitions=partitions
        ):
            return
        if time.monotonic() >= deadline:
            raise WaitTimeout(projection.name, position, timeout)
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
    with read_transaction(views) as conn:
        done = _applied_positions(conn, name)
    with read_transaction(store.engine) as conn:
        for topic in topics:
            _, aggregate_type = split_topic(topic)
            floor = min((done.get((topic, p), 0) for p in range(partitions)), default=0)
            if floor >= position:
                continue
            rows = conn.execute(
                select(schema.events.c.aggregate_id, schema.events.c.global_position).where(
                    and_(
                        schema.events.c.aggregate_type == aggregate_type,
                        schema.events.c.global_position > floor,
                        schema.events.c.global_position <= position,
                    )
                )
            )
            for aggregate_id, event_position in rows:
                p = partition_for(aggregate_id, partitions) if partitions > 1 else 0
                if done.get((topic, p), 0) < event_position:
                    return False
    return True


def _applied_positions(conn: Connection, name: str) -> dict[tuple[str, int], int]:
    rows = conn.execute(
        select(positions.c.topic, positions.c.partition, positions.c.last_position).where(
            positions.c.projection == name
        )
    )
    return {(r[0], r[1]): int(r[2]) for r in rows}
