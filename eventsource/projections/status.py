"""What `eventsource projection status` reports, and `reset`."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, func, inspect, select

from eventsource.bus.base import LogConsumer, PartitionLag, StartAt, TopicPartition
from eventsource.bus.foreign import ForeignTopic
from eventsource.bus.partitioner import partition_for
from eventsource.bus.sqllog import split_topic
from eventsource.errors import StoreError
from eventsource.projections import deadletters, members, positions
from eventsource.projections.base import Consumer, Reactor
from eventsource.projections.members import HEARTBEAT_SECONDS, Member
from eventsource.projections.tables import create_missing, projections
from eventsource.store import schema
from eventsource.store.engine import read_transaction, write_connection
from eventsource.store.eventstore import EventStore
from eventsource.store.migrate import upgrade_schema


@dataclass
class PartitionStatus:
    topic: str
    partition: int
    offset: int
    last_position: int
    end: int
    lag: int  # offsets to the end (on Kafka transaction markers count too)
    lag_events: int | None = None  # events not applied yet (None: the store is not at hand)


@dataclass
class ConsumerStatus:
    """What `projection status` shows.

    `status` is `running` only while a worker's heartbeat is fresh, else
    `unresponsive` (workers that stopped beating: killed or hung), else what
    the last worker recorded: `stopped`, `failed`, `rebuilt`, `never run`.
    """

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
    members: list[Member] = field(default_factory=list)
    live_members: list[str] = field(default_factory=list)  # names of those beating
    unresponsive_since: datetime | None = None
    retrying: str | None = None  # "retrying since <time>: <reason>" while a worker waits
    missing_topics: list[str] = field(default_factory=list)
    recorded_status: str = ""

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def lag_events(self) -> int | None:
        counts = [p.lag_events for p in self.partitions]
        return None if not counts or None in counts else sum(c for c in counts if c is not None)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["members"] = [m.as_dict() for m in self.members]
        out["lag"] = self.lag
        out["lag_events"] = self.lag_events
        return out


_PROBE = 100


def status(
    cls: type[Consumer],
    engine: Engine,
    log_consumer: LogConsumer,
    *,
    stores: Mapping[str, EventStore] | None = None,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
) -> ConsumerStatus:
    """State, members and positions of `cls`, with the end of each partition.

    Reads only: a database without the framework's tables reports "never
    run". With the source contexts' `stores` at hand, lag is also counted in
    events (what the store holds beyond what was applied).
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
        letters = deadletters.counts(conn, cls.name) if migrated else {}
        workers = (
            members.listing(conn, cls.name) if inspect(conn).has_table("projection_members") else []
        )
    counts = {topic: log_consumer.partitions(topic) for topic in cls.topics}
    partitions: dict[TopicPartition, StartAt] = {}
    for topic, count in counts.items():
        for p in range(count):
            tp = TopicPartition(topic, p)
            found = stored.get(tp)
            partitions[tp] = found.start if found else StartAt(0)
    log_consumer.assign(partitions)
    lags = _probe_small_lags(log_consumer, log_consumer.lag()) if partitions else {}
    recorded = str(row["status"]) if row else "never run"
    result = ConsumerStatus(
        name=cls.name,
        kind="reactor" if issubclass(cls, Reactor) else "projection",
        version=int(row["version"]) if row else None,
        code_version=cls.version,
        status=recorded,
        recorded_status=recorded,
        last_error=row["last_error"] if row else None,
        last_error_at=row["last_error_at"] if row else None,
        parked=sum(letters.get(s, 0) for s in deadletters.WAITING),
        dead_letters=letters,
        members=workers,
        missing_topics=[topic for topic, count in counts.items() if count == 0],
    )
    _liveness(result, heartbeat_seconds)
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
    if stores:
        _count_events_behind(result, stores, counts)
    return result


def _liveness(result: ConsumerStatus, heartbeat_seconds: float) -> None:
    """`running` only on a fresh heartbeat; `unresponsive` when all have gone stale."""
    now = datetime.now(UTC)
    live = [m for m in result.members if m.fresh(now, heartbeat_seconds)]
    result.live_members = [m.name for m in live]
    if live:
        result.status = "running"
        waiting = [m for m in live if m.retrying_since is not None]
        if waiting:
            first = min(waiting, key=lambda m: m.retrying_since or now)
            since = (
                first.retrying_since.isoformat(timespec="seconds") if first.retrying_since else ""
            )
            result.retrying = f"retrying since {since}: {first.retry_reason}"
    elif result.members:
        result.status = "unresponsive"
        result.unresponsive_since = max(m.heartbeat_at for m in result.members)


def _count_events_behind(
    result: ConsumerStatus, stores: Mapping[str, EventStore], counts: Mapping[str, int]
) -> None:
    by_topic: dict[str, dict[int, PartitionStatus]] = {}
    for p in result.partitions:
        by_topic.setdefault(p.topic, {})[p.partition] = p
    foreign = {str(t) for t in counts if isinstance(t, ForeignTopic)}
    for topic, parts in by_topic.items():
        if topic in foreign:
            continue  # no store holds a foreign topic's records
        context, aggregate_type = split_topic(topic)
        store = stores.get(context)
        if store is None:
            continue
        applied = {n: p.last_position for n, p in parts.items()}
        try:
            behind = events_behind(store, aggregate_type, applied, counts[topic])
        except StoreError:
            continue  # not a store's database (or unreachable): offsets only

        for n, p in parts.items():
            p.lag_events = behind.get(n, 0)


def events_behind(
    store: EventStore, aggregate_type: str, applied: Mapping[int, int], partitions: int
) -> dict[int, int]:
    """Per partition, how many of the store's events of `aggregate_type` lie
    beyond the last position applied from that partition."""
    events = schema.events
    floor = min((applied.get(p, 0) for p in range(partitions)), default=0)
    with read_transaction(store.engine) as conn:
        if partitions <= 1:
            count = conn.execute(
                select(func.count()).where(
                    events.c.aggregate_type == aggregate_type,
                    events.c.global_position > applied.get(0, 0),
                )
            ).scalar_one()
            return {0: int(count)}
        rows = conn.execute(
            select(events.c.aggregate_id, events.c.global_position).where(
                events.c.aggregate_type == aggregate_type, events.c.global_position > floor
            )
        )
        out = dict.fromkeys(range(partitions), 0)
        for aggregate_id, position in rows:
            p = partition_for(aggregate_id, partitions)
            if position > applied.get(p, 0):
                out[p] += 1
        return out


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
