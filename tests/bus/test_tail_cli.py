"""`eventsource events tail`: one readable line per event, on the embedded log
and on Kafka, configured through EVENTSOURCE_* variables."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Producer

from eventsource import EventStore, Repository, StoredEvent
from eventsource.bus import wire
from eventsource.bus.config import KafkaConfig
from eventsource.bus.relay import Relay
from tests.bus.children import Child
from tests.bus.model import BusOrder, populate
from tests.conftest import ROOT


def tail(*args: str, env: dict[str, str], timeout: float = 60.0) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-m", "eventsource", "events", "tail", *args],
        check=False,
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def line_of(record: StoredEvent, topic: str, partition: int, offset: int) -> list[str]:
    """What a line must show of an event."""
    return [
        record.occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%f"),
        f"{topic}[{partition}]@{offset}",
        f"#{record.position}",
        record.event_type,
        f"{record.aggregate_id} v{record.version}",
        record.payload,
    ]


def test_embedded_tail_prints_every_event_from_the_beginning(
    sqlite_store_factory: Callable[..., EventStore],
) -> None:
    store = sqlite_store_factory()
    records = populate(store, orders=3, items=2, customers=2)
    url = str(store.engine.url)
    env = {"EVENTSOURCE_DATABASE_URL": url, "EVENTSOURCE_CONTEXT": store.context}
    lines = tail("--from-beginning", "--idle-exit", "1", env=env)
    by_type = {t: [r for r in records if r.aggregate_type == t] for t in ("order", "customer")}
    assert len(lines) == len(records)
    # Topics take turns; within a topic, lines follow the log.
    for aggregate_type, expected in by_type.items():
        topic = store.topic_for(aggregate_type)
        mine = [line for line in lines if f"  {topic}[0]@" in line]
        assert len(mine) == len(expected)
        for line, record in zip(mine, expected, strict=True):
            for part in line_of(record, topic, 0, record.position):
                assert part in line, (part, line)

    # One topic, and a limit; options on the command line win over the settings.
    only = tail(
        "--topic",
        store.topic_for("customer"),
        "--from-beginning",
        "--max-events",
        "1",
        "--url",
        url,
        "--context",
        store.context,
        env={"EVENTSOURCE_CONTEXT": "elsewhere"},
    )
    assert len(only) == 1
    assert f"{store.topic_for('customer')}[0]@{by_type['customer'][0].position}" in only[0]


def test_embedded_tail_without_from_beginning_prints_only_new_events(
    sqlite_store_factory: Callable[..., EventStore],
) -> None:
    store = sqlite_store_factory()
    old = populate(store, orders=3, items=1, customers=0)
    env = {
        "EVENTSOURCE_DATABASE_URL": str(store.engine.url),
        "EVENTSOURCE_CONTEXT": store.context,
    }
    child = Child(
        [sys.executable, "-m", "eventsource", "events", "tail", "--max-events", "3"],
        {**os.environ, **env},
    )
    orders = Repository(store, BusOrder)
    new: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while child.process.poll() is None and time.monotonic() < deadline:
            new.append(orders.save(BusOrder.place(f"new-{len(new)}")))
            time.sleep(0.3)
    finally:
        code, out, err = child.finish(timeout=10)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 3
    printed = [int(line.split("  #")[1].split()[0]) for line in lines]
    assert all(p > old[-1].position for p in printed)
    assert printed == sorted(printed)
    assert set(printed) <= set(new)


@pytest.mark.kafka
def test_kafka_tail_prints_events_and_flags_what_is_not_one(
    tmp_path: Path, kafka_store: EventStore, kafka_config: KafkaConfig, kafka_servers: str
) -> None:
    store = kafka_store
    records = populate(store, orders=4, items=2, customers=0)
    with Relay(store, kafka_config) as relay:
        relay.run(until_caught_up=True)
    topic = store.topic_for("order")
    producer = Producer({"bootstrap.servers": kafka_servers})
    producer.produce(topic, b"\xff not an event", b"k", partition=0)
    unknown = records[-1]._replace(
        position=records[-1].position + 1, version=99, event_type="bus.never_registered"
    )
    key, value, headers, _ = wire.encode(unknown)
    producer.produce(topic, value, key, headers=headers)
    producer.flush(30)

    env = {"EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS": kafka_servers}
    lines = tail("--topic", topic, "--from-beginning", "--idle-exit", "3", env=env)
    assert len(lines) == len(records) + 2
    events = [line for line in lines if not line.startswith("!!")]
    assert len(events) == len(records) + 1
    for record in records:
        [line] = [line for line in events if f"  #{record.position}  " in line]
        when, _, *rest = line_of(record, topic, 0, 0)  # the partition is Kafka's choice
        for part in [when, *rest]:
            assert part in line, (part, line)
        assert f"  {topic}[" in line
    [garbage] = [line for line in lines if line.startswith("!!")]
    assert f"!! {topic}[0]@" in garbage
    assert "not an event" in garbage
    assert "missing header 'es-event-type'" in garbage

    # Validating with the application's event classes flags the unknown type.
    checked = tail(
        "--topic",
        topic,
        "--from-beginning",
        "--max-events",
        str(len(records) + 2),
        "--import",
        "tests.bus.model",
        env=env,
    )
    flagged = [line for line in checked if "bus.never_registered" in line]
    assert len(flagged) == 1
    assert "!!" in flagged[0]
    assert sum("!!" in line for line in checked) == 2
