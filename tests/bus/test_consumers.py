"""The `LogConsumer` contract (shipped in `eventsource.testing.contracts`), run on
every log backend: the embedded SQL log (SQLite and PostgreSQL stores) and
Kafka (the store relayed first). Then what only one backend can do wrong:
for Kafka, duplicates, foreign messages and transactions produced by hand
onto the topic."""

from __future__ import annotations

import gc
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KafkaTopicPartition

from eventsource import EventStore, Repository
from eventsource.bus import config as config_module
from eventsource.bus import kafka as kafka_module
from eventsource.bus import wire
from eventsource.bus.admin import TopicAdmin
from eventsource.bus.base import LogConsumer, LogMessage, StartAt, TopicPartition
from eventsource.bus.config import KafkaConfig
from eventsource.bus.kafka import KafkaLogConsumer
from eventsource.bus.polled import Polled, ends_of
from eventsource.bus.relay import Relay
from eventsource.bus.sqllog import SqlLogConsumer
from eventsource.errors import BusError, ConfigurationError, DecodeError, UnknownEventType
from eventsource.events.records import StoredEvent
from eventsource.testing.contracts import (
    LogConsumerContract,
    LogUnderTest,
    positions,
    read_all,
    read_to_end,
)
from tests.bus.model import BusOrder, populate, read_committed, topic_partitions
from tests.conftest import unique

LOG_BACKENDS = [
    "embedded",
    pytest.param("embedded-postgres", marks=pytest.mark.postgres),
    pytest.param("kafka", marks=pytest.mark.kafka),
]


class EmbeddedLog(LogUnderTest):
    """The store's own SQL log: nothing to publish, one partition per topic."""

    def make_consumer(self) -> LogConsumer:
        return SqlLogConsumer({self.store.context: self.store})


class KafkaLog(LogUnderTest):
    """Kafka topics that the relay fills from the store."""

    def __init__(self, store: EventStore, kafka: KafkaConfig) -> None:
        super().__init__(store)
        self.kafka = kafka

    def make_consumer(self) -> LogConsumer:
        return KafkaLogConsumer(self.kafka)

    def publish(self) -> None:
        with Relay(self.store, self.kafka, batch_size=40) as relay:
            relay.run(until_caught_up=True)

    def partitions(self) -> list[TopicPartition]:
        # The relay creates a topic with the first event of its aggregate type.
        used = {self.store.topic_for(r.aggregate_type) for r in read_all(self.store)}
        counts = topic_partitions(self.kafka.bootstrap_servers, sorted(used), settle=10)
        assert set(counts) == used
        return sorted(TopicPartition(t, p) for t, n in counts.items() for p in range(n))


class TestLogConsumerContract(LogConsumerContract):
    @pytest.fixture(params=LOG_BACKENDS)
    def log_under_test(
        self, request: pytest.FixtureRequest, database_url_factory: Callable[..., str]
    ) -> Iterator[LogUnderTest]:
        kind = request.param
        context = request.getfixturevalue("kafka_context") if kind == "kafka" else unique("bus")
        url = database_url_factory("postgres" if kind == "embedded-postgres" else "sqlite")
        store = EventStore(url, context=context)
        store.create_schema()
        log: LogUnderTest
        if kind == "kafka":
            log = KafkaLog(store, request.getfixturevalue("kafka_config"))
        else:
            log = EmbeddedLog(store)
        with log:
            yield log
        store.close()


# -- the embedded log ----------------------------------------------------------------


def test_embedded_offsets_are_global_positions(
    sqlite_store_factory: Callable[..., EventStore],
) -> None:
    store = sqlite_store_factory()
    records = populate(store, orders=4, items=2)
    consumer = SqlLogConsumer({store.context: store})
    consumer.assign({TopicPartition(store.topic_for("order"), 0): StartAt(0)})
    messages = read_to_end(consumer)
    assert [m.offset for m in messages] == [
        r.position for r in records if r.aggregate_type == "order"
    ]
    assert all(m.offset == m.record.position for m in messages if m.record)


def test_embedded_log_names_what_is_not_configured(
    sqlite_store_factory: Callable[..., EventStore],
) -> None:
    store = sqlite_store_factory()
    consumer = SqlLogConsumer({store.context: store})
    with pytest.raises(ConfigurationError, match=r"'elsewhere'.*EVENTSOURCE_STORES"):
        consumer.assign({TopicPartition("elsewhere.order", 0): StartAt(0)})
    with pytest.raises(ConfigurationError, match="only partition 0"):
        consumer.assign({TopicPartition(store.topic_for("order"), 1): StartAt(0)})
    with pytest.raises(ConfigurationError, match=r"<context>\.<aggregate type>"):
        consumer.subscribe(["no-dot"], lambda p: {}, lambda p: None)


def test_embedded_log_reads_other_contexts_stores(
    sqlite_store_factory: Callable[..., EventStore],
) -> None:
    orders, billing = sqlite_store_factory(), sqlite_store_factory()
    populate(orders, orders=3, items=1)
    populate(billing, orders=2, items=1)
    consumer = SqlLogConsumer({orders.context: orders, billing.context: billing})
    consumer.assign(
        {TopicPartition(s.topic_for("order"), 0): StartAt(0) for s in (orders, billing)}
    )
    messages = read_to_end(consumer)
    assert Counter(m.topic for m in messages) == {
        orders.topic_for("order"): 6,
        billing.topic_for("order"): 4,
    }


# -- Kafka: what other producers can put on a topic ------------------------------------


def produce_by_hand(
    servers: str, topic: str, partition: int, messages: list[tuple[bytes | None, object, list]]
) -> list[int]:
    """Produce (key, value, headers) messages, non-transactionally; their offsets."""
    producer = Producer({"bootstrap.servers": servers, "enable.idempotence": True})
    offsets: list[int] = []

    def delivered(error: object, message: object) -> None:
        assert error is None, error
        offsets.append(message.offset())  # type: ignore[attr-defined]

    for key, value, headers in messages:
        producer.produce(
            topic, value, key, partition=partition, headers=headers, on_delivery=delivered
        )
        producer.flush(30)
    assert len(offsets) == len(messages)
    return offsets


def kafka_log(kafka_config: KafkaConfig, store: EventStore) -> KafkaLog:
    return KafkaLog(store, kafka_config)


@pytest.mark.kafka
def test_a_duplicated_message_is_dropped_and_what_follows_is_kept(
    kafka_store: EventStore, kafka_config: KafkaConfig, kafka_servers: str
) -> None:
    log = kafka_log(kafka_config, kafka_store)
    try:
        populate(kafka_store, orders=9, items=2)
        log.publish()
        original = next(d for d in read_committed(kafka_servers, log.topics) if d.version == 2)
        produce_by_hand(
            kafka_servers,
            original.topic,
            original.partition,
            [(original.key, original.value, list(original.headers.items()))],
        )
        # More events of the same aggregate land behind the duplicate.
        orders = Repository(kafka_store, BusOrder)
        order = orders.get(original.stream[1])
        order.add("after-the-duplicate")
        orders.save(order)
        log.publish()

        raw = read_committed(kafka_servers, log.topics)
        assert Counter(d.position for d in raw)[original.position] == 2  # it is on the topic

        consumer = log.consumer()
        consumer.assign(log.from_start())
        messages = read_to_end(consumer)
        got = positions(messages)
        assert sorted(got) == sorted({d.position for d in raw})
        assert Counter(got)[original.position] == 1
        stream = [
            m.record.version
            for m in messages
            if m.record is not None and m.record.aggregate_id == order.id
        ]
        assert stream == list(range(1, order.version + 1))
    finally:
        log.close()


@pytest.mark.kafka
def test_a_poll_of_hundreds_returns_each_message_once_in_partition_order(
    kafka_store: EventStore, kafka_config: KafkaConfig
) -> None:
    # The consumer takes a poll's messages from librdkafka a few hundred at a
    # time and converts each chunk taking them off the end of the reversed
    # list: a poll of a thousand still returns them in order, and says where
    # it leaves each partition as reading every message would.
    log = kafka_log(kafka_config, kafka_store)
    try:
        records = populate(kafka_store, orders=400, items=3, customers=6)
        log.publish()
        consumer = log.consumer()
        consumer.assign(log.from_start())
        got = list(consumer.poll(1, 10.0))
        time.sleep(1.0)  # librdkafka fetches the rest meanwhile
        largest = 0
        deadline = time.monotonic() + 30
        while len(got) < len(records):
            batch = consumer.poll(1000, 1.0)
            assert len(batch) <= 1000
            largest = max(largest, len(batch))
            assert isinstance(batch, Polled)
            assert batch.ends == ends_of(list(batch))
            got += batch
            assert time.monotonic() < deadline
        assert largest > kafka_module.CHUNK  # polls of more than one chunk were made
        assert sorted(positions(got)) == [r.position for r in records]
        offsets: dict[tuple[str, int], list[int]] = {}
        for m in got:
            offsets.setdefault((m.topic, m.partition), []).append(m.offset)
        assert all(o == sorted(set(o)) for o in offsets.values())
    finally:
        log.close()


@pytest.mark.kafka
def test_a_batch_held_until_its_commit_leaves_the_garbage_collector_nothing_to_walk(
    kafka_store: EventStore, kafka_config: KafkaConfig
) -> None:
    # A worker holds each batch from its poll to its commit. Its messages,
    # their records and their event ids held as objects were promoted to the
    # collector's oldest generation, whose every collection walks the whole
    # process: a batch holds plain values the collector stops tracking.
    log = kafka_log(kafka_config, kafka_store)
    try:
        records = populate(kafka_store, orders=300, items=3)
        log.publish()
        consumer = log.consumer()
        consumer.assign(log.from_start())
        held: list[Sequence[LogMessage]] = []
        got = 0
        deadline = time.monotonic() + 30
        gc.collect()
        before = len(gc.get_objects())
        while got < len(records):
            batch = consumer.poll(5000, 1.0)
            held.append(batch)
            got += len(batch)
            assert time.monotonic() < deadline
        gc.collect()
        tracked = len(gc.get_objects()) - before
        assert got == len(records) > 1000
        # (As objects, three a message: the message, its record and its event id.)
        assert tracked < got / 5, f"{tracked} more tracked objects holding {got} messages"
        # ...and every message is there when read.
        assert sorted(positions([m for b in held for m in b])) == [r.position for r in records]
    finally:
        log.close()


@pytest.mark.kafka
def test_foreign_messages_are_errors_naming_where_they_are_and_nothing_is_lost(
    kafka_store: EventStore, kafka_config: KafkaConfig, kafka_servers: str
) -> None:
    log = kafka_log(kafka_config, kafka_store)
    try:
        first = populate(kafka_store, orders=9, items=1, customers=0)
        log.publish()
        topic = kafka_store.topic_for("order")
        template = wire.encode(first[0])[2]
        no_position = [(k, v) for k, v in template if k != wire.H_POSITION]
        avro = [(k, b"avro/binary" if k == "content-type" else v) for k, v in template]
        foreign = produce_by_hand(
            kafka_servers,
            topic,
            0,
            [
                (b"k", b"\x00\x01\xfe\xff garbage", None),
                (None, b'{"orderId": 1}', [("__TypeId__", b"com.example.Order")]),
                (first[0].aggregate_id.encode(), first[0].payload.encode(), no_position),
                (b"k", first[0].payload.encode(), avro),
            ],
        )
        second = populate(kafka_store, orders=9, items=1, customers=0, prefix="next-")
        log.publish()

        consumer = log.consumer()
        consumer.assign(log.from_start())
        messages = read_to_end(consumer)
        bad = [m for m in messages if m.record is None]
        assert [(m.topic, m.partition, m.offset) for m in bad] == [(topic, 0, o) for o in foreign]
        for m in bad:
            assert isinstance(m.error, DecodeError)
            assert (m.error.topic, m.error.partition, m.error.offset) == (topic, 0, m.offset)
            assert f"offset={m.offset}" in str(m.error)
        # Every event, including those behind the foreign messages in partition 0.
        assert sorted(positions(messages)) == [r.position for r in first + second]
        behind = [m for m in messages if m.partition == 0 and m.offset > foreign[-1]]
        assert any(m.record is not None for m in behind)
    finally:
        log.close()


@pytest.mark.kafka
def test_an_event_of_an_unknown_type_is_delivered_and_the_codec_names_it(
    kafka_store: EventStore, kafka_config: KafkaConfig, kafka_servers: str
) -> None:
    """The bus does not know event classes; a well-formed message of a type no
    class is registered under reaches the worker, whose codec refuses it."""
    log = kafka_log(kafka_config, kafka_store)
    try:
        records = populate(kafka_store, orders=3, items=1, customers=0)
        log.publish()
        last = records[-1]
        stranger = last._replace(
            position=last.position + 1,
            version=last.version + 1,
            event_type="bus.never_registered",
        )
        key, value, headers, _ = wire.encode(stranger)
        orders = [kafka_store.topic_for("order")]
        tp = next(d for d in read_committed(kafka_servers, orders) if d.key == key)
        [offset] = produce_by_hand(kafka_servers, tp.topic, tp.partition, [(key, value, headers)])

        consumer = log.consumer()
        consumer.assign(log.from_start())
        messages = read_to_end(consumer)
        [message] = [m for m in messages if m.offset == offset and m.partition == tp.partition]
        assert message.error is None
        assert message.record == stranger
        with pytest.raises(UnknownEventType, match=r"bus\.never_registered"):
            kafka_store.codec.decode(message.record)
        assert len(messages) == len(records) + 1
    finally:
        log.close()


@pytest.mark.kafka
def test_aborted_transactions_are_invisible_and_committed_ones_complete(
    sqlite_store_factory: Callable[..., EventStore],
    kafka_context: str,
    kafka_config: KafkaConfig,
    kafka_servers: str,
) -> None:
    store = sqlite_store_factory(context=kafka_context)
    records = list(populate(store, orders=40, items=3, customers=0))[:125]
    assert len(records) == 125
    topic = store.topic_for("order")
    TopicAdmin(kafka_config).ensure([topic], partitions=1)

    producer = Producer(kafka_config.producer(unique("bus-tx")))
    producer.init_transactions(30)
    producer.begin_transaction()
    for r in records[:100]:
        key, value, headers, timestamp = wire.encode(r)
        producer.produce(topic, value, key, headers=headers, timestamp=timestamp)
    producer.flush(30)  # on the broker's log, not just queued
    producer.abort_transaction(30)
    producer.begin_transaction()
    for r in records[100:]:
        key, value, headers, timestamp = wire.encode(r)
        producer.produce(topic, value, key, headers=headers, timestamp=timestamp)
    producer.commit_transaction(30)

    probe = Consumer(kafka_config.consumer(unique("bus-probe")))
    try:
        low, high = probe.get_watermark_offsets(KafkaTopicPartition(topic, 0), timeout=30)
    finally:
        probe.close()
    assert high - low >= 127  # 100 aborted, their marker, 25 committed, their marker

    consumer = KafkaLogConsumer(kafka_config)
    try:
        consumer.assign({TopicPartition(topic, 0): StartAt(0)})
        messages = read_to_end(consumer)
        assert positions(messages) == [r.position for r in records[100:]]
        assert consumer.lag()[TopicPartition(topic, 0)].lag == 0
    finally:
        consumer.close()


@pytest.mark.kafka
def test_a_partition_whose_end_trails_an_open_transaction_is_not_caught_up_at_once(
    sqlite_store_factory: Callable[..., EventStore],
    kafka_context: str,
    kafka_config: KafkaConfig,
) -> None:
    # read_committed stops at the last stable offset, before an open
    # transaction (as it does for a moment after each commit, until the
    # broker writes the markers): caught_up must look past it.
    store = sqlite_store_factory(context=kafka_context)
    records = list(populate(store, orders=10, items=3, customers=0))[:30]
    topic = store.topic_for("order")
    TopicAdmin(kafka_config).ensure([topic], partitions=1)
    producer = Producer(kafka_config.producer(unique("bus-open-tx")))
    producer.init_transactions(30)

    def send(batch: list[StoredEvent]) -> None:
        for r in batch:
            key, value, headers, timestamp = wire.encode(r)
            producer.produce(topic, value, key, headers=headers, timestamp=timestamp)

    producer.begin_transaction()
    send(records[:25])
    producer.commit_transaction(30)
    producer.begin_transaction()
    send(records[25:])
    producer.flush(30)  # on the broker's log, its transaction still open

    consumer = KafkaLogConsumer(kafka_config)
    try:
        consumer.assign({TopicPartition(topic, 0): StartAt(0)})
        seen: list[LogMessage] = []
        deadline = time.monotonic() + 60
        while len(seen) < 25:
            seen.extend(consumer.poll(100, 0.2))
            assert time.monotonic() < deadline, "the committed events did not arrive"
        seen.extend(consumer.poll(100, 0.5))  # at the last stable offset: nothing more
        assert positions(seen) == [r.position for r in records[:25]]
        assert not consumer.caught_up()
        assert consumer.lag()[TopicPartition(topic, 0)].lag >= 5  # the open transaction's

        producer.commit_transaction(30)
        seen.extend(read_to_end(consumer))
        assert positions(seen) == [r.position for r in records]
    finally:
        consumer.close()


def test_asking_for_partition_ends_adds_no_warnings_of_its_own(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The consumer asks for partition ends on a connection of its own. Its
    # errors are served only when it closes: as warnings they would tell an
    # operator the brokers are down long after they came back.
    monkeypatch.setattr(kafka_module, "_WATERMARK_TIMEOUT", 1.0)
    monkeypatch.setattr(config_module._log_error, "_last", {})  # nothing said this minute
    consumer = KafkaLogConsumer(KafkaConfig("127.0.0.1:1"))  # nothing listens there
    consumer.assign({TopicPartition("nowhere.order", 0): StartAt(0)})
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(BusError, match=r"cannot read the end of nowhere\.order"):
            consumer.lag()
        consumer.close()
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [line for line in said if "said once a minute" in line], said
    assert any("probe for partition ends" in r.getMessage() for r in caplog.records)
