"""A Kafka Connect sink reading an eventsource topic: Apache Kafka's
`FileStreamSinkConnector` writes each relayed event to a file, and the file
holds exactly the events of the store, once each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from eventsource import EventStore, StoredEvent
from eventsource.bus.config import KafkaConfig
from eventsource.bus.relay import Relay
from tests.bus.model import Delivered, populate, read_committed
from tests.connect.configs import JSON_SINK, RAW_SINK, filled
from tests.connect.conftest import Connect, wait_for_commits

pytestmark = pytest.mark.kafka


@dataclass
class Relayed:
    """The orders' topic of a store whose events were relayed to Kafka."""

    topic: str
    records: list[StoredEvent]  # the orders' events in the store
    delivered: list[Delivered]  # the topic's committed messages


@pytest.fixture
def relayed(sqlite_store: EventStore, kafka_config: KafkaConfig, kafka_context: str) -> Relayed:
    """Orders and customers saved through the store and relayed to Kafka."""
    records = populate(sqlite_store, orders=8, items=3, customers=2)
    with Relay(sqlite_store, kafka_config) as relay:
        assert relay.run(until_caught_up=True) == len(records)
    topic = f"{kafka_context}.order"
    delivered = read_committed(kafka_config.bootstrap_servers, [topic])
    orders = [r for r in records if r.aggregate_type == "order"]
    assert len(delivered) == len(orders)
    return Relayed(topic, orders, delivered)


@pytest.fixture
def run_sink(
    connect: Connect,
    create_connector: Callable[[str, dict[str, str]], str],
    kafka_servers: str,
    tmp_path: Path,
) -> Callable[[dict[str, str], Relayed], list[str]]:
    """`run_sink(config, relayed)`: run a file sink connector of `config` on the
    relayed topic until it has committed every message; its file's lines."""

    def run(config: dict[str, str], relayed: Relayed) -> list[str]:
        file = tmp_path / "sink.txt"
        name = create_connector("sink", filled(config, topic=relayed.topic, file=str(file)))
        connect.wait_running(name)
        ends: dict[tuple[str, int], int] = {}
        for d in relayed.delivered:
            where = (d.topic, d.partition)
            ends[where] = max(ends.get(where, 0), d.offset + 1)
        wait_for_commits(kafka_servers, f"connect-{name}", ends)
        return file.read_text(encoding="utf-8").splitlines()

    return run


def java_rendering(line: str) -> dict[str, str]:
    """A schemaless Connect value as the file sink prints it: Java's
    `Map.toString()`, `{name=value, ...}` (the values here hold no ", " or "=")."""
    assert line.startswith("{"), line
    assert line.endswith("}"), line
    return dict(item.split("=", 1) for item in line[1:-1].split(", "))


def as_java(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def test_a_json_sink_gets_every_event_once_with_its_fields(
    relayed: Relayed, run_sink: Callable[[dict[str, str], Relayed], list[str]]
) -> None:
    lines = run_sink(JSON_SINK, relayed)
    by_event = {str(r.event_id): r for r in relayed.records}
    at = {(d.partition, d.offset): d for d in relayed.delivered}
    seen: list[str] = []
    for line in lines:
        fields = java_rendering(line)
        message = at[int(fields.pop("kafka_partition")), int(fields.pop("kafka_offset"))]
        event = by_event[message.headers["es-event-id"].decode()]
        assert message.headers["es-event-type"].decode() == event.event_type
        assert message.key == event.aggregate_id.encode()
        assert fields == {k: as_java(v) for k, v in orjson.loads(event.payload).items()}
        seen.append(str(event.event_id))
    assert sorted(seen) == sorted(by_event)  # every event, once
    # One aggregate's events in one partition, so in version order in the file.
    versions: dict[str, list[int]] = {}
    for event_id in seen:
        event = by_event[event_id]
        versions.setdefault(event.aggregate_id, []).append(event.version)
    assert all(v == sorted(v) for v in versions.values()), versions


def test_a_raw_sink_writes_each_value_as_the_json_the_store_holds(
    relayed: Relayed, run_sink: Callable[[dict[str, str], Relayed], list[str]]
) -> None:
    lines = run_sink(RAW_SINK, relayed)
    # Byte for byte the stored payloads (the messages' values), one a line, once each.
    assert sorted(lines) == sorted(r.payload for r in relayed.records)
    assert all(isinstance(orjson.loads(line), dict) for line in lines)
