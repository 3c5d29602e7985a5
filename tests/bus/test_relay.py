"""The relay: every event on its topic exactly once, in per-aggregate order;
restarts resume where Kafka says; an older relay is fenced and its open
transaction never shows; a broker outage is waited out."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KafkaTopicPartition

from eventsource import EventStore
from eventsource.bus.admin import TopicAdmin
from eventsource.bus.config import KafkaConfig
from eventsource.bus.partitioner import partition_for
from eventsource.bus.relay import Relay, RelayProgress
from eventsource.errors import BusError, RelayFenced
from tests.bus.children import Child, cli_env
from tests.bus.conftest import PARTITIONS
from tests.bus.model import judge, populate, read_all, read_committed
from tests.conftest import services, unique

pytestmark = pytest.mark.kafka


def topics_of(store: EventStore) -> list[str]:
    return [store.topic_for("order"), store.topic_for("customer")]


def on_kafka(servers: str, store: EventStore) -> int:
    """How many committed messages the store's topics hold (so far)."""
    return len(read_committed(servers, topics_of(store), settle=0))


def messages_on_log(kafka_config: KafkaConfig, topics: list[str]) -> int:
    """Offsets used in the topics' partitions: committed, aborted and markers."""
    counts = TopicAdmin(kafka_config).list_topics()
    consumer = Consumer(kafka_config.consumer(unique("bus-probe")))
    try:
        total = 0
        for topic in topics:
            for p in range(counts[topic]):
                low, high = consumer.get_watermark_offsets(
                    KafkaTopicPartition(topic, p), timeout=30, cached=False
                )
                total += high - low
        return total
    finally:
        consumer.close()


def test_every_event_is_published_once_in_order(
    store_factory: Callable[..., EventStore],
    kafka_context: str,
    kafka_config: KafkaConfig,
    kafka_servers: str,
) -> None:
    store = store_factory(context=kafka_context)
    records = populate(store, orders=20, items=4, customers=5)
    seen: list[RelayProgress] = []
    with Relay(store, kafka_config, batch_size=25) as relay:
        assert relay.start() == 0
        assert relay.run(until_caught_up=True, progress=seen.append) == len(records)
        assert relay.position == store.head_position()
        assert relay.run(until_caught_up=True) == 0

    # The context's topics, and the one of its forget notices (made at start).
    notices = store.topic_for("personal_data")
    assert TopicAdmin(kafka_config).list_topics(f"{kafka_context}.") == dict.fromkeys(
        [*topics_of(store), notices], PARTITIONS
    )
    delivered = read_committed(kafka_servers, topics_of(store))
    verdict = judge(records, delivered)
    assert verdict.exactly_once, verdict
    # Keys land where Java's default partitioner would put them.
    assert all(d.partition == partition_for(d.key or b"", PARTITIONS) for d in delivered)
    # Progress: one report per batch, growing, ending at the head with no lag.
    assert [p.relayed for p in seen[:-1]] == sorted({p.relayed for p in seen[:-1]})
    assert seen[-1] == RelayProgress(len(records), records[-1].position, records[-1].position)
    assert seen[-1].lag == 0


def test_a_restarted_relay_resumes_after_the_last_committed_event(
    kafka_store: EventStore, kafka_config: KafkaConfig, kafka_servers: str
) -> None:
    store = kafka_store
    first = populate(store, orders=10, items=2, customers=2)
    with Relay(store, kafka_config, batch_size=7) as relay:
        relay.run(until_caught_up=True)
    more = populate(store, orders=6, items=2, customers=1, prefix="more-")

    with Relay(store, kafka_config, batch_size=7) as relay:
        assert relay.start() == first[-1].position
        assert relay.run(until_caught_up=True) == len(more)
    with Relay(store, kafka_config) as relay:
        assert relay.start() == more[-1].position
        assert relay.run(until_caught_up=True) == 0

    verdict = judge(first + more, read_committed(kafka_servers, topics_of(store)))
    assert verdict.exactly_once, verdict


class FailingCommit(Relay):
    """Its next `failures` commits fail the way a refused transaction does."""

    def __init__(self, *args, failures: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.failures = failures

    def _commit(self, producer: Producer) -> None:
        if self.failures:
            self.failures -= 1
            producer.flush(30)  # the batch is on the broker's log, uncommitted
            raise BusError("Kafka refused the transaction (injected by the test)")
        super()._commit(producer)


def test_a_failed_transaction_is_aborted_and_the_batch_sent_again(
    kafka_store: EventStore, kafka_config: KafkaConfig, kafka_servers: str, caplog
) -> None:
    store = kafka_store
    records = populate(store, orders=10, items=3, customers=2)
    caplog.set_level(logging.WARNING, logger="eventsource")
    with FailingCommit(store, kafka_config, batch_size=20, failures=2) as relay:
        assert relay.run(until_caught_up=True) == len(records)
    assert sum("injected by the test" in r.getMessage() for r in caplog.records) == 2

    # The aborted batches were written (and are hidden), not just dropped locally.
    assert messages_on_log(kafka_config, topics_of(store)) >= len(records) + 2 * 20
    verdict = judge(records, read_committed(kafka_servers, topics_of(store)))
    assert verdict.exactly_once, verdict


def test_a_restart_reads_past_an_aborted_tail(
    kafka_store: EventStore, kafka_config: KafkaConfig, kafka_servers: str
) -> None:
    """Recovery looks for the last *committed* event, however many aborted
    messages follow it."""
    store = kafka_store
    first = populate(store, orders=5, items=1, customers=0)
    with Relay(store, kafka_config) as relay:
        relay.run(until_caught_up=True)
    more = populate(store, orders=60, items=3, customers=0, prefix="more-")
    with (
        FailingCommit(store, kafka_config, batch_size=len(more)) as relay,
        pytest.raises(BusError, match="injected"),
    ):
        relay.relay_batch()
    with Relay(store, kafka_config) as relay:
        assert relay.start() == first[-1].position
        assert relay.run(until_caught_up=True) == len(more)
    verdict = judge(first + more, read_committed(kafka_servers, [store.topic_for("order")]))
    assert verdict.exactly_once, verdict


class PausedRelay(Relay):
    """Stops in its first transaction after producing, before committing."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.produced = threading.Event()
        self.resume = threading.Event()

    def _commit(self, producer: Producer) -> None:
        if not self.produced.is_set():
            producer.flush(30)
            self.produced.set()
            assert self.resume.wait(60)
        super()._commit(producer)


def test_the_older_relay_is_fenced_and_its_open_transaction_never_shows(
    kafka_store: EventStore, kafka_config: KafkaConfig, kafka_servers: str
) -> None:
    store = kafka_store
    records = populate(store, orders=15, items=3, customers=3)
    older = PausedRelay(store, kafka_config, batch_size=30)
    failure: list[BaseException] = []

    def run_older() -> None:
        try:
            older.run(until_caught_up=True)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run_older)
    thread.start()
    try:
        assert older.produced.wait(60), "the older relay never produced"
        with Relay(store, kafka_config, batch_size=30) as newer:
            assert newer.start() == 0  # the older one's batch is not committed
            assert newer.run(until_caught_up=True) == len(records)
    finally:
        older.resume.set()
        thread.join(60)
    assert not thread.is_alive()

    assert len(failure) == 1, failure
    assert isinstance(failure[0], RelayFenced), failure
    message = str(failure[0])
    assert "fenced" in message
    assert older.transactional_id in message
    assert "another relay" in message
    assert older.relayed == 0

    verdict = judge(records, read_committed(kafka_servers, topics_of(store)))
    assert verdict.exactly_once, verdict
    # The older relay's 30 messages did reach the log, and stay invisible.
    assert messages_on_log(kafka_config, topics_of(store)) >= len(records) + 30
    with Relay(store, kafka_config) as again:
        assert again.start() == records[-1].position


def test_a_second_relay_command_fences_the_first_which_exits_with_a_clear_message(
    tmp_path: Path, kafka_context: str, kafka_config: KafkaConfig, kafka_servers: str
) -> None:
    url = f"sqlite:///{tmp_path / 'orders.db'}"
    store = EventStore(url, context=kafka_context)
    store.create_schema()
    try:
        first = populate(store, orders=8, items=2, customers=2)
        command = [sys.executable, "-m", "eventsource", "relay", "run", "--url", url]
        command += ["--context", kafka_context]
        older = Child(command, cli_env(kafka_servers))
        newer: Child | None = None
        try:
            older.wait_for("resumes after global position 0")
            wait_until(lambda: on_kafka(kafka_servers, store) == len(first))
            newer = Child(command, cli_env(kafka_servers))
            newer.wait_for(f"resumes after global position {first[-1].position}")
            more = populate(store, orders=3, items=1, customers=1, prefix="more-")
            code, _, err = older.finish()
            assert code == 1, err
            assert "error: relay" in err
            assert "was fenced: another relay with the same transactional id" in err
            everything = first + more
            wait_until(lambda: on_kafka(kafka_servers, store) == len(everything))
            newer.process.terminate()  # SIGTERM: finish the batch, exit cleanly
            code, out, err = newer.finish()
            assert code == 0, err
            assert f"Kafka holds the store up to position {everything[-1].position}" in out
        finally:
            for child in (older, newer):
                if child is not None:
                    child.finish(timeout=0)
        verdict = judge(read_all(store), read_committed(kafka_servers, topics_of(store)))
        assert verdict.exactly_once, verdict
    finally:
        store.close()


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


class Background:
    """`Relay.run` in a thread, keeping its result or its exception."""

    def __init__(self, relay: Relay, *, until_caught_up: bool) -> None:
        self.relay = relay
        self.stop = threading.Event()
        self.relayed: list[int] = []
        self.failure: list[BaseException] = []
        self._until_caught_up = until_caught_up
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            self.relayed.append(
                self.relay.run(stop=self.stop, until_caught_up=self._until_caught_up)
            )
        except BaseException as exc:
            self.failure.append(exc)


@pytest.mark.serial
def test_the_relay_waits_out_a_broker_outage_and_loses_nothing(
    sqlite_store_factory: Callable[..., EventStore],
    kafka_config: KafkaConfig,
    kafka_servers: str,
    caplog,
) -> None:
    """Two relays live through one outage: one was running when the broker went
    away, the other starts while it is away."""
    caplog.set_level(logging.WARNING, logger="eventsource")
    running_store = sqlite_store_factory()
    late_store = sqlite_store_factory()
    admin = TopicAdmin(kafka_config)
    running = Background(
        Relay(running_store, kafka_config, batch_size=20, max_backoff=2.0), until_caught_up=False
    )
    late = Background(
        Relay(late_store, kafka_config, batch_size=20, max_backoff=2.0), until_caught_up=True
    )
    try:
        first = populate(running_store, orders=10, items=2, customers=2)
        running.thread.start()
        wait_until(lambda: on_kafka(kafka_servers, running_store) == len(first))
        services("kafka-stop")
        try:
            more = populate(running_store, orders=10, items=2, customers=2, prefix="more-")
            stranded = populate(late_store, orders=10, items=2, customers=2)
            late.thread.start()
            time.sleep(8)
            assert running.thread.is_alive()
            assert late.thread.is_alive()
            assert not running.failure
            assert not late.failure
            assert running.relay.relayed == len(first)
            assert not late.relayed
        finally:
            services("kafka-start")
        back = time.monotonic()
        late.thread.join(120)
        assert not late.thread.is_alive(), "the late relay did not finish in 120 s"
        assert late.relayed == [len(stranded)], late.failure
        wait_until(lambda: on_kafka(kafka_servers, running_store) == len(first + more), 120)
        print(f"both relays were done {time.monotonic() - back:.1f} s after the broker was back")
        running.stop.set()
        running.thread.join(60)
        assert not running.thread.is_alive(), "a thread the test started is still running"
        assert running.relayed == [len(first + more)], running.failure

        # The outage was reported, through eventsource's loggers, as it happened.
        reports = [
            r.getMessage()
            for r in caplog.records
            if r.name.startswith("eventsource") and r.levelno >= logging.WARNING
        ]
        assert any("Connection refused" in m or "brokers are down" in m for m in reports)

        verdict = judge(first + more, read_committed(kafka_servers, topics_of(running_store)))
        assert verdict.exactly_once, verdict
        verdict = judge(stranded, read_committed(kafka_servers, topics_of(late_store)))
        assert verdict.exactly_once, verdict
    finally:
        for job in (running, late):
            job.stop.set()
            if job.thread.is_alive():
                job.thread.join(60)
                assert not job.thread.is_alive(), "a thread the test started is still running"
            job.relay.close()
        for store in (running_store, late_store):
            admin.delete(admin.list_topics(f"{store.context}."))
