"""What `eventsource projection status` reports, and `reset`."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, inspect, select

from eventsource.bus.base import LogConsumer, PartitionLag, StartAt, TopicPartition
from eventsource.projections import deadletters, positions
from eventsource.projections.base import Consumer, Reactor
from eventsource.projections.tables import create_missing, projections
from eventsource.store.engine import read_transaction, write_connection
from eventsource.store.eventstore import upgrade_schema


@dataclass
class PartitionStatus:
    topic: str
    partition: int
    offset: int
    last_position: int
    end: int
    lag: int


@dataclass
class ConsumerStatus:
    name: str
    kind: str
    version: int | None
    code_version: int
    status: str
    last_error: str | None
    last_error_at: datetime | None
    partitions: list[PartitionStatus] = field(default_factory=list)
    parked: int = 0  # parked and blocked: waiting for a replay or a skip
    dead_letters: dict[str, int] = field(default_factory=dict)  # every status, counted

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["lag"] = self.lag
        return out


_PROBE = 100


def status(cls: type[Consumer], engine: Engine, log_consumer: LogConsumer) -> ConsumerStatus:
    """Stored state and positions of `cls`, with the end of each partition.

    Reads only: a database without the framework's tables reports "never run".
    """
    with read_transaction(engine) as conn:
        migrated = inspect(conn).has_table(projections.name)
        row = (
            conn.execute(select(projections).where(projections.c.name == cls.name))
            .mappings()
            .first()
            if migrated
            else None
        )
        stored = positions.all_positions(conn, cls.name) if migrated else {}
    partitions: dict[TopicPartition, StartAt] = {}
    for topic in cls.topics:
        for p in range(log_consumer.partitions(topic)):
            tp = TopicPartition(topic, p)
            found = stored.get(tp)
            partitions[tp] = found.start if found else StartAt(0)
    log_consumer.assign(partitions)
    lags = _probe_small_lags(log_consumer, log_consumer.lag())
    with read_transaction(engine) as conn:
        letters = deadletters.counts(conn, cls.name) if migrated else {}
    parked = sum(letters.get(status, 0) for status in deadletters.WAITING)
    result = ConsumerStatus(
        name=cls.name,
        kind="reactor" if issubclass(cls, Reactor) else "projection",
        version=int(row["version"]) if row else None,
        code_version=cls.version,
        status=str(row["status"]) if row else "never run",
        last_error=row["last_error"] if row else None,
        last_error_at=row["last_error_at"] if row else None,
        parked=parked,
        dead_letters=letters,
    )
    for tp, start in sorted(partitions.items()):
        lag = lags.get(tp)
        result.partitions.append(
            PartitionStatus(
                topic=tp.topic,
                partition=tp.partition,
                offset=start.offset,
                last_position=start.last_position,
                end=lag.end if lag else start.offset,
                lag=lag.lag if lag else 0,
            )
        )
    return result


def reset(cls: type[Consumer], engine: Engine) -> None:
    """Empty the views and forget the positions: the next run starts from offset zero.

    Readers see the views empty until it catches up; `rebuild` avoids that.
    """
    upgrade_schema(engine)
    with write_connection(engine) as conn, conn.begin():
        create_missing(conn, cls.tables)
        for table in cls.tables:
            conn.execute(delete(table))
        positions.reset(conn, cls.name)
        conn.execute(delete(projections).where(projections.c.name == cls.name))


def _probe_small_lags(
    log_consumer: LogConsumer, lags: dict[TopicPartition, PartitionLag]
) -> dict[TopicPartition, PartitionLag]:
    """Read what little is left of nearly caught-up partitions, to count exactly.

    On Kafka the end offset also counts transaction markers, so a projection
    that has applied everything still shows a lag of one per partition; a
    short read to the end tells events from markers.
    """
    near = {tp for tp, lag in lags.items() if 0 < lag.lag <= _PROBE}
    if not near:
        return lags
    seen: dict[TopicPartition, int] = dict.fromkeys(near, 0)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and not log_consumer.caught_up():
        for message in log_consumer.poll(_PROBE * len(near), 0.2):
            if message.topic_partition in seen:
                seen[message.topic_partition] += 1
    if not log_consumer.caught_up():
        return lags
    return {
        tp: PartitionLag(lag.position, lag.position + seen[tp], seen[tp]) if tp in near else lag
        for tp, lag in lags.items()
    }
