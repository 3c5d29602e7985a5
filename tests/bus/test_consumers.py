"""The `LogConsumer` contract, written once and run on every log backend: the
embedded SQL log (SQLite and PostgreSQL stores) and Kafka (the store relayed
first). Then what only Kafka can do wrong: duplicates, foreign messages and
transactions produced by hand onto the topic."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KafkaTopicPartition

from eventsource import EventStore, Repository
from eventsource.bus import wire
from eventsource.bus.admin import TopicAdmin
from eventsource.bus.base import LogConsumer, LogMessage, StartAt, TopicPartition
from eventsource.bus.config import KafkaConfig
from eventsource.bus.kafka import KafkaLogConsumer
from eventsource.bus.relay import Relay
from eventsource.bus.sqllog import SqlLogConsumer
from eventsource.errors import ConfigurationError, DecodeError, UnknownEventType
from tests.bus.model import BusOrder, populate, read_all, read_committed, topic_partitions
from tests.conftest import unique

LOG_BACKENDS = [
    "embedded",
    pytest.param("embedded-postgres", marks=pytest.mark.postgres),
    pytest.param("kafka", marks=pytest.mark.kafka),
]
contract = pytest.mark.parametrize("log_backend", LOG_BACKENDS, indirect=True)


class LogUnderTest:
    """A store, and the log that carries its events (embedded or Kafka)."""

    def __init__(self, store: EventStore, kafka: KafkaConfig | None) -> None:
        self.store = store
        self.kafka = kafka
        self.topics = [store.topic_for("order"), store.topic_for("customer")]
        self._consumers: list[LogConsumer] = []

    def publish(self) -> None:
        """Make everything stored so far readable on the log."""
        if self.kafka is not None:
            with Relay(self.store, self.kafka, batch_size=40) as relay:
                relay.run(until_caught_up=True)

    def consumer(self) -> LogConsumer:
        consumer: LogConsumer
        if self.kafka is not None:
            consumer = KafkaLogConsumer(self.kafka)
        else:
            consumer = SqlLogConsumer({self.store.context: self.store})
        self._consumers.append(consumer)
        return consumer

    def partitions(self) -> list[TopicPartition]:
        if self.kafka is None:
            return sorted(TopicPartition(t, 0) for t in self.topics)
        # The relay creates a topic with the first event of its aggregate type.
        used = {self.store.topic_for(r.aggregate_type) for r in read_all(self.store)}
        counts = topic_partitions(self.kafka.bootstrap_servers, sorted(used), settle=10)
        assert set(counts) == used
        return sorted(TopicPartition(t, p) for t, n in counts.items() for p in range(n))

    def from_start(self) -> dict[TopicPartition, StartAt]:
        return {tp: StartAt(0) for tp in self.partitions()}

    def close(self) -> None:
        for consumer in self._consumers:
            consumer.close()


@pytest.fixture
def log_backend(
    request: pytest.FixtureRequest, database_url_factory: Callable[..., str]
) -> Iterator[LogUnderTest]:
    kind = request.param
    if kind == "kafka":
        context = request.getfixturevalue("kafka_context")
        kafka: KafkaConfig | None = request.getfixturevalue("kafka_config")
    else:
        context, kafka = unique("bus"), None
    url = database_url_factory("postgres" if kind == "embedded-postgres" else "sqlite")
    store = EventStore(url, context=context)
    store.create_schema()
    log = LogUnderTest(store, kafka)
    yield log
    log.close()
    store.close()


def read_to_end(
    consumer: LogConsumer, *, batch: int = 100, timeout: float = 60.0
) -> list[LogMessage]:
    """Poll until every assigned partition has been read to its end."""
    out: list[LogMessage] = []
    deadline = time.monotonic() + timeout
    while True:
        out.extend(consumer.poll(batch, 0.2))
        if consumer.caught_up():
            return out
        assert time.monotonic() < deadline, f"not caught up after {timeout} s: {consumer.lag()}"


def by_partition(messages: Sequence[LogMessage]) -> dict[TopicPartition, list[LogMessage]]:
    out: dict[TopicPartition, list[LogMessage]] = defaultdict(list)
    for m in messages:
        out[m.topic_partition].append(m)
    return out


def positions(messages: Sequence[LogMessage]) -> list[int]:
    return [m.record.position for m in messages if m.record is not None]


# -- the contract ------------------------------------------------------------------


@contract
def test_every_event_is_read_once_in_order(log_backend: LogUnderTest) -> None:
    records = populate(log_backend.store, orders=12, items=4, customers=4)
    log_backend.publish()
    consumer = log_backend.consumer()
    consumer.assign(log_backend.from_start())
    assert consumer.assignment() == log_backend.partitions()
    messages = read_to_end(consumer, batch=17)

    assert all(m.error is None and m.record is not None for m in messages)
    assert Counter(positions(messages)) == Counter(r.position for r in records)
    stored = {r.position: r for r in records}
    for m in messages:
        assert m.record == stored[m.record.position]
        assert m.topic == log_backend.store.topic_for(m.record.aggregate_type)
    for tp, group in by_partition(messages).items():
        offsets = [m.offset for m in group]
        assert offsets == sorted(set(offsets)), f"offsets of {tp} not increasing"
        assert positions(group) == sorted(set(positions(group))), f"positions of {tp}"
    streams: dict[str, list[LogMessage]] = defaultdict(list)
    for m in messages:
        streams[m.record.stream_id].append(m)
    for stream_id, group in streams.items():
        assert len({m.topic_partition for m in group}) == 1, f"{stream_id} split over partitions"
        assert [m.record.version for m in group] == list(range(1, len(group) + 1)), stream_id


@contract
def test_assign_resumes_at_the_given_offset(log_backend: LogUnderTest) -> None:
    populate(log_backend.store, orders=12, items=3)
    log_backend.publish()
    first = log_backend.consumer()
    first.assign(log_backend.from_start())
    everything = by_partition(read_to_end(first))

    # Resume each partition after its middle message, as a worker would from
    # the offset and position it stored with its view.
    starts, expected = {}, []
    for tp in log_backend.partitions():
        group = everything.get(tp, [])
        if not group:
            starts[tp] = StartAt(0)
            continue
        middle = group[len(group) // 2]
        assert middle.record is not None
        starts[tp] = StartAt(middle.offset + 1, middle.record.position)
        expected += group[len(group) // 2 + 1 :]
    assert expected, "nothing left to resume with"
    second = log_backend.consumer()
    second.assign(starts)
    resumed = read_to_end(second, batch=7)
    assert sorted((m.topic, m.partition, m.offset, m.record) for m in resumed) == sorted(
        (m.topic, m.partition, m.offset, m.record) for m in expected
    )


@contract
def test_seek_moves_an_assigned_partition_back(log_backend: LogUnderTest) -> None:
    populate(log_backend.store, orders=12, items=3)
    log_backend.publish()
    consumer = log_backend.consumer()
    consumer.assign(log_backend.from_start())
    everything = by_partition(read_to_end(consumer))
    tp, group = max(everything.items(), key=lambda item: len(item[1]))
    assert len(group) >= 3
    before, target = group[1], group[2]
    assert before.record is not None

    consumer.seek(tp, StartAt(target.offset, before.record.position))
    again = read_to_end(consumer)
    assert [(m.topic_partition, m.offset, m.record) for m in again] == [
        (m.topic_partition, m.offset, m.record) for m in group[2:]
    ]
    assert consumer.assignment() == log_backend.partitions()


@contract
def test_positions_already_applied_are_dropped(log_backend: LogUnderTest) -> None:
    """StartAt(offset, last_position): what a worker applied before is never
    handed to it again, even when it resumes from an earlier offset."""
    records = populate(log_backend.store, orders=10, items=3)
    log_backend.publish()
    applied = records[len(records) // 2].position
    consumer = log_backend.consumer()
    consumer.assign({tp: StartAt(0, applied) for tp in log_backend.partitions()})
    messages = read_to_end(consumer)
    assert sorted(positions(messages)) == [r.position for r in records if r.position > applied]


@contract
def test_lag_and_caught_up_follow_the_end_of_the_log(log_backend: LogUnderTest) -> None:
    records = populate(log_backend.store, orders=9, items=2, customers=2)
    log_backend.publish()
    consumer = log_backend.consumer()
    consumer.assign(log_backend.from_start())
    assert not consumer.caught_up()
    lag = consumer.lag()
    assert sorted(lag) == log_backend.partitions()
    # Kafka's lag also counts transaction markers: at least one per event.
    assert sum(p.lag for p in lag.values()) >= len(records)
    assert all(p.end >= p.position + p.lag for p in lag.values() if p.lag)

    assert len(read_to_end(consumer)) == len(records)
    assert consumer.caught_up()
    assert all(p.lag == 0 for p in consumer.lag().values())

    # New events: the end moves before the consumer reads them.
    more = populate(log_backend.store, orders=4, items=1, customers=1, prefix="more-")
    log_backend.publish()
    lag = consumer.lag()
    assert sum(p.lag for p in lag.values()) >= len(more)
    assert all(p.end > p.position for p in lag.values() if p.lag)
    assert sorted(positions(read_to_end(consumer))) == [r.position for r in more]
    assert consumer.caught_up()
    assert all(p.lag == 0 for p in consumer.lag().values())


@contract
def test_subscribe_asks_where_each_partition_resumes(log_backend: LogUnderTest) -> None:
    records = populate(log_backend.store, orders=12, items=2, customers=3)
    log_backend.publish()
    everything = by_partition(read_to_end(_assigned(log_backend)))
    tp, group = max(everything.items(), key=lambda item: len(item[1]))
    skip = group[len(group) // 2]
    assert skip.record is not None

    asked: list[list[TopicPartition]] = []

    def on_assign(partitions: list[TopicPartition]) -> dict[TopicPartition, StartAt]:
        asked.append(sorted(partitions))
        return {tp: StartAt(skip.offset + 1, skip.record.position)}  # others: from the start

    consumer = log_backend.consumer()
    consumer.subscribe(log_backend.topics, on_assign, lambda partitions: None)
    messages = read_to_end(consumer)
    assert asked == [log_backend.partitions()]
    assert consumer.assignment() == log_backend.partitions()
    skipped = {m.record.position for m in group[: len(group) // 2 + 1] if m.record}
    assert sorted(positions(messages)) == sorted(
        r.position for r in records if r.position not in skipped
    )


def _assigned(log_backend: LogUnderTest) -> LogConsumer:
    consumer = log_backend.consumer()
    consumer.assign(log_backend.from_start())
    return consumer


@contract
def test_poll_returns_what_is_there_without_waiting_out_the_timeout(
    log_backend: LogUnderTest,
) -> None:
    records = populate(log_backend.store, orders=3, items=1, customers=1)
    log_backend.publish()
    consumer = _assigned(log_backend)
    got: list[LogMessage] = []
    started = time.monotonic()
    while len(got) < len(records):
        got += consumer.poll(1000, 10.0)
        assert time.monotonic() - started < 8.0, f"{len(got)} of {len(records)} after 8 s"
    assert len(got) == len(records)

    # At the end of the log it waits about `timeout`, then returns nothing.
    started = time.monotonic()
    while consumer.poll(1000, 0.5):
        pass
    assert time.monotonic() - started < 3.0
    assert consumer.poll(1000, 0.5) == []


@contract
def test_poll_returns_at_most_max_messages(log_backend: LogUnderTest) -> None:
    records = populate(log_backend.store, orders=8, items=2)
    log_backend.publish()
    consumer = _assigned(log_backend)
    got: list[LogMessage] = []
    deadline = time.monotonic() + 30
    while len(got) < len(records):
        batch = consumer.poll(3, 1.0)
        assert len(batch) <= 3
        got += batch
        assert time.monotonic() < deadline
    assert sorted(positions(got)) == [r.position for r in records]


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


def kafka_log(kafka_config: KafkaConfig, store: EventStore) -> LogUnderTest:
    return LogUnderTest(store, kafka_config)


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
