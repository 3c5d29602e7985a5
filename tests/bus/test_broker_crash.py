"""`kill -9` the Kafka broker three times while 20,000 events are relayed and
read: the relay and the consumer recover by themselves, and the topics hold
every event exactly once."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from eventsource import EventStore
from eventsource.bus.admin import TopicAdmin
from eventsource.bus.base import LogMessage, StartAt, TopicPartition
from eventsource.bus.config import KafkaConfig
from eventsource.bus.kafka import KafkaLogConsumer
from tests.bus.children import Child, cli_env
from tests.bus.model import judge, populate, read_all, read_committed
from tests.conftest import services

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.serial]

CHUNKS = 100
CHUNK = 200  # events per chunk: 38 orders placed with 4 items each, 10 customers
TOTAL = CHUNKS * CHUNK
RECOVERY = 120.0


class Writer(threading.Thread):
    """The application: keeps saving events, broker or not."""

    def __init__(self, store: EventStore) -> None:
        super().__init__(daemon=True)
        self.store = store
        self.written = 0
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            for chunk in range(CHUNKS):
                saved = populate(
                    self.store, orders=38, items=4, customers=10, prefix=f"{chunk}-", seed=chunk
                )
                assert len(saved) == CHUNK
                self.written += len(saved)
                time.sleep(0.05)
        except BaseException as exc:
            self.failure = exc


class Reader(threading.Thread):
    """A projection's consumer: reads every partition from offset zero, forever."""

    def __init__(self, config: KafkaConfig, topics: list[str]) -> None:
        super().__init__(daemon=True)
        self.config = config
        self.topics = topics
        self.messages: list[LogMessage] = []
        self.positions: set[int] = set()
        self.stop = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            admin = TopicAdmin(self.config)
            while len(counts := admin.list_topics(self.topics[0].split(".")[0] + ".")) < 2:
                time.sleep(0.2)
            consumer = KafkaLogConsumer(self.config)
            try:
                consumer.assign(
                    {TopicPartition(t, p): StartAt(0) for t, n in counts.items() for p in range(n)}
                )
                while not self.stop.is_set():
                    for message in consumer.poll(1000, 0.5):
                        self.messages.append(message)
                        if message.record is not None:
                            self.positions.add(message.record.position)
            finally:
                consumer.close()
        except BaseException as exc:
            self.failure = exc


def wait_until(condition, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout} s"
        time.sleep(0.2)
    return time.monotonic() - started


def test_relay_and_consumer_recover_from_broker_kills(
    tmp_path: Path, kafka_context: str, kafka_config: KafkaConfig, kafka_servers: str
) -> None:
    url = f"sqlite:///{tmp_path / 'orders.db'}"
    store = EventStore(url, context=kafka_context)
    store.create_schema()
    topics = [store.topic_for("order"), store.topic_for("customer")]
    command = [sys.executable, "-m", "eventsource", "relay", "run", "--batch-size", "200"]
    relay = Child([*command, "--url", url, "--context", kafka_context], cli_env(kafka_servers))
    writer = Writer(store)
    reader = Reader(kafka_config, topics)
    kills: list[tuple[int, int]] = []
    try:
        relay.wait_for("resumes after global position 0")
        writer.start()
        reader.start()
        for fraction in (0.2, 0.5, 0.8):
            wait_until(
                lambda f=fraction: len(reader.positions) >= f * TOTAL,
                RECOVERY,
                f"the consumer reaching {fraction:.0%}",
            )
            kills.append((writer.written, len(reader.positions)))
            services("kafka-kill")
            services("kafka-start")
        took = wait_until(
            lambda: len(reader.positions) >= TOTAL and writer.written == TOTAL,
            RECOVERY,
            "the consumer reading every event after the last restart",
        )
        print(f"kills at (written, read) {kills}; all read {took:.1f} s after the last restart")
        assert writer.failure is None, writer.failure
        assert reader.failure is None, reader.failure
        assert relay.process.poll() is None, "the relay exited instead of recovering"
    finally:
        services("kafka-start")  # whatever happened, the broker runs again
        reader.stop.set()
        reader.join(60)
        assert not reader.is_alive(), "a thread the test started is still running"
        relay.process.terminate()
        code, out, err = relay.finish(timeout=60)

    assert code == 0, err[-5000:]
    assert f"up to position {TOTAL}" in out
    records = read_all(store)
    store.close()
    assert len(records) == TOTAL

    # The live consumer: every event once (its position filter may have dropped
    # duplicates; the topic itself is judged below), nothing undecodable.
    assert all(m.error is None for m in reader.messages)
    seen = Counter(m.record.position for m in reader.messages if m.record is not None)
    assert sorted(seen) == [r.position for r in records]
    assert max(seen.values()) == 1

    verdict = judge(records, read_committed(kafka_servers, topics, timeout=120))
    assert verdict.exactly_once, verdict
