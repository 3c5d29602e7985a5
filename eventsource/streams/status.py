"""What `eventsource transform status` reports for a transform on Kafka.

A transform's progress is its consumer group's committed offsets (they
commit in its transactions), so status needs no database: per input
partition, the committed offset and global position, the end, and the lag.
On the embedded log a transform is a reactor, and its status is a
consumer's (`eventsource.projections.status`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from eventsource.bus.base import StartAt, TopicPartition
from eventsource.bus.config import KafkaConfig
from eventsource.bus.kafka import BEGINNING, KafkaLogConsumer
from eventsource.errors import BrokerUnavailable
from eventsource.streams.kafka import group_id
from eventsource.streams.topology import Transform

_TIMEOUT = 10.0


@dataclass
class InputStatus:
    topic: str
    partition: int
    committed: int | None  # the next offset to read; None: nothing committed yet
    last_position: int
    end: int
    lag: int  # offsets to the end (transaction markers count too)


@dataclass
class TransformStatus:
    name: str
    output: str
    group: str
    state: str  # the group's: Stable, Empty, PreparingRebalance, ... (or "unknown")
    members: list[str] = field(default_factory=list)  # client ids of the group's members
    partitions: list[InputStatus] = field(default_factory=list)
    missing_topics: list[str] = field(default_factory=list)

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def committed_total(self) -> int:
        """The committed offsets added up: it grows as the transform commits batches."""
        return sum(p.committed or 0 for p in self.partitions)

    @property
    def status(self) -> str:
        """`running` while the group has members (`rebalancing` while they are
        being given partitions), else `stopped`, or `never run` before any
        commit; `unknown` when the group could not be described.

        Kafka drops a member whose session times out, so a killed process
        leaves the group within its session timeout and shows as `stopped`.
        """
        if self.state == "unknown":
            return "unknown"
        if self.members:
            return "running" if self.state == "Stable" else "rebalancing"
        if all(p.committed is None for p in self.partitions):
            return "never run"
        return "stopped"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["lag"] = self.lag
        out["status"] = self.status
        return out


def kafka_status(transform: Transform, kafka: KafkaConfig) -> TransformStatus:
    """The transform's group, members and committed offsets, with the end of each input."""
    group = group_id(transform.name, kafka.topic_prefix)
    state, members = _group(kafka, group)
    result = TransformStatus(transform.name, transform.output, group, state, members)
    # A consumer of the group that never joins it: it only reads offsets.
    with KafkaLogConsumer(kafka, group_id=group) as reader:
        counts = {topic: reader.partitions(topic) for topic in transform.topics}
        result.missing_topics = [t for t, n in counts.items() if n == 0]
        partitions = [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
        committed = reader.committed(partitions)
        reader.assign({tp: StartAt(max(at.offset, 0)) for tp, at in committed.items()})
        lags = reader.lag() if partitions else {}
    for tp in partitions:
        start = committed[tp]
        lag = lags[tp]
        result.partitions.append(
            InputStatus(
                topic=tp.topic,
                partition=tp.partition,
                committed=None if start.offset == BEGINNING else start.offset,
                last_position=start.last_position,
                end=lag.end,
                lag=lag.lag,
            )
        )
    return result


def _group(kafka: KafkaConfig, group: str) -> tuple[str, list[str]]:
    admin = AdminClient(kafka.client())
    try:
        described = admin.describe_consumer_groups([group], request_timeout=_TIMEOUT)[group]
        description: Any = described.result(_TIMEOUT)  # a ConsumerGroupDescription
    except TimeoutError as exc:
        raise BrokerUnavailable(
            f"cannot reach Kafka at {kafka.bootstrap_servers}: no answer within {_TIMEOUT:.0f} s"
        ) from exc
    except KafkaException:
        return "unknown", []
    state = getattr(description.state, "name", str(description.state))
    return state, sorted(m.client_id for m in description.members)
