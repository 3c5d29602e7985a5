"""What every `LogConsumer` backend must do, as tests a backend's own suite runs.

A backend's tests subclass `LogConsumerContract` and provide the fixture
`log_under_test`: a `LogUnderTest` whose store's events the backend carries::

    class MyLog(LogUnderTest):
        def make_consumer(self) -> LogConsumer:
            return MyLogConsumer(...)

        def publish(self) -> None:
            ...  # move what the store holds onto the log, if the log is elsewhere


    class TestMyLog(LogConsumerContract):
        @pytest.fixture
        def log_under_test(self, tmp_path: Path) -> Iterator[LogUnderTest]:
            store = EventStore(f"sqlite:///{tmp_path}/events.db", context="shop")
            store.create_schema()
            with MyLog(store) as log:
                yield log
            store.close()

eventsource runs the same class against its embedded SQL log (SQLite and
PostgreSQL stores) and Kafka.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from collections.abc import Sequence
from types import TracebackType

import pytest

from eventsource.bus.base import LogConsumer, LogMessage, StartAt, TopicPartition
from eventsource.store import EventStore
from eventsource.testing.contracts.domain import CUSTOMER, ORDER, populate


class LogUnderTest(ABC):
    """A store, and the log backend that carries its events.

    The contract records events in `store` (aggregate types `order` and
    `customer`: topics `<context>.order` and `<context>.customer`), calls
    `publish()`, then reads them back through consumers from
    `make_consumer()`::

        class MyLog(LogUnderTest):
            def make_consumer(self) -> LogConsumer:
                return MyLogConsumer(self.store.context)
    """

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.topics = [store.topic_for(ORDER), store.topic_for(CUSTOMER)]
        self._consumers: list[LogConsumer] = []

    @abstractmethod
    def make_consumer(self) -> LogConsumer:
        """A new consumer of the log, assigned nothing yet."""

    def publish(self) -> None:  # noqa: B027 (a log that reads the store has nothing to do)
        """Make every event stored so far readable on the log (a relay's work).

        Nothing to do for a log that reads the store itself.
        """

    def partitions(self) -> list[TopicPartition]:
        """Every partition of `topics`, sorted (by default one each, partition 0)."""
        return sorted(TopicPartition(topic, 0) for topic in self.topics)

    def consumer(self) -> LogConsumer:
        """A new consumer, closed with this object."""
        consumer = self.make_consumer()
        self._consumers.append(consumer)
        return consumer

    def from_start(self) -> dict[TopicPartition, StartAt]:
        return {tp: StartAt(0) for tp in self.partitions()}

    def close(self) -> None:
        for consumer in self._consumers:
            consumer.close()
        self._consumers.clear()

    def __enter__(self) -> LogUnderTest:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


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
    """The global positions of the events among `messages`, in order."""
    return [m.record.position for m in messages if m.record is not None]


def _assigned(log: LogUnderTest) -> LogConsumer:
    consumer = log.consumer()
    consumer.assign(log.from_start())
    return consumer


def _largest(messages: Sequence[LogMessage]) -> tuple[TopicPartition, list[LogMessage]]:
    return max(by_partition(messages).items(), key=lambda item: len(item[1]))


class LogConsumerContract:
    """The tests every `LogConsumer` must pass.

    Subclass it as `Test...` and provide the `log_under_test` fixture::

        class TestMyLog(LogConsumerContract):
            @pytest.fixture
            def log_under_test(self, event_store_factory):
                with MyLog(event_store_factory(context="shop")) as log:
                    yield log
    """

    @pytest.fixture
    def log_under_test(self) -> LogUnderTest:
        pytest.fail(f"{type(self).__name__} must define a `log_under_test` fixture")

    def test_every_event_is_read_once_in_order(self, log_under_test: LogUnderTest) -> None:
        log = log_under_test
        records = populate(log.store, orders=12, items=4, customers=4)
        log.publish()
        consumer = log.consumer()
        consumer.assign(log.from_start())
        assert consumer.assignment() == log.partitions()
        messages = read_to_end(consumer, batch=17)

        assert all(m.error is None and m.record is not None for m in messages)
        assert Counter(positions(messages)) == Counter(r.position for r in records)
        stored = {r.position: r for r in records}
        streams: dict[str, list[LogMessage]] = defaultdict(list)
        for m in messages:
            assert m.record is not None
            assert m.record == stored[m.record.position]
            assert m.topic == log.store.topic_for(m.record.aggregate_type)
            streams[m.record.stream_id].append(m)
        for tp, group in by_partition(messages).items():
            offsets = [m.offset for m in group]
            assert offsets == sorted(set(offsets)), f"offsets of {tp} not increasing"
            assert positions(group) == sorted(set(positions(group))), f"positions of {tp}"
        for stream_id, group in streams.items():
            assert len({m.topic_partition for m in group}) == 1, f"{stream_id} split"
            versions = [m.record.version for m in group if m.record is not None]
            assert versions == list(range(1, len(group) + 1)), stream_id

    def test_assign_resumes_at_the_given_offset(self, log_under_test: LogUnderTest) -> None:
        log = log_under_test
        populate(log.store, orders=12, items=3)
        log.publish()
        everything = by_partition(read_to_end(_assigned(log)))

        # Resume each partition after its middle message, as a worker would from
        # the offset and position it stored with its view.
        starts: dict[TopicPartition, StartAt] = {}
        expected: list[LogMessage] = []
        for tp in log.partitions():
            group = everything.get(tp, [])
            if not group:
                starts[tp] = StartAt(0)
                continue
            middle = group[len(group) // 2]
            assert middle.record is not None
            starts[tp] = StartAt(middle.offset + 1, middle.record.position)
            expected += group[len(group) // 2 + 1 :]
        assert expected, "nothing left to resume with"
        second = log.consumer()
        second.assign(starts)
        resumed = read_to_end(second, batch=7)
        assert sorted(_identity(m) for m in resumed) == sorted(_identity(m) for m in expected)

    def test_seek_moves_an_assigned_partition_back(self, log_under_test: LogUnderTest) -> None:
        log = log_under_test
        populate(log.store, orders=12, items=3)
        log.publish()
        consumer = _assigned(log)
        tp, group = _largest(read_to_end(consumer))
        assert len(group) >= 3
        before, target = group[1], group[2]
        assert before.record is not None

        consumer.seek(tp, StartAt(target.offset, before.record.position))
        again = read_to_end(consumer)
        assert [(m.topic_partition, m.offset, m.record) for m in again] == [
            (m.topic_partition, m.offset, m.record) for m in group[2:]
        ]
        assert consumer.assignment() == log.partitions()

    def test_positions_already_applied_are_dropped(self, log_under_test: LogUnderTest) -> None:
        """StartAt(offset, last_position): what a worker applied before is never
        handed to it again, even when it resumes from an earlier offset."""
        log = log_under_test
        records = populate(log.store, orders=10, items=3)
        log.publish()
        applied = records[len(records) // 2].position
        consumer = log.consumer()
        consumer.assign({tp: StartAt(0, applied) for tp in log.partitions()})
        messages = read_to_end(consumer)
        assert sorted(positions(messages)) == [r.position for r in records if r.position > applied]

    def test_lag_and_caught_up_follow_the_end_of_the_log(
        self, log_under_test: LogUnderTest
    ) -> None:
        log = log_under_test
        records = populate(log.store, orders=9, items=2, customers=2)
        log.publish()
        consumer = _assigned(log)
        assert not consumer.caught_up()
        lag = consumer.lag()
        assert sorted(lag) == log.partitions()
        # Kafka's lag also counts transaction markers: at least one per event.
        assert sum(p.lag for p in lag.values()) >= len(records)
        assert all(p.end >= p.position + p.lag for p in lag.values() if p.lag)

        assert len(read_to_end(consumer)) == len(records)
        assert consumer.caught_up()
        assert all(p.lag == 0 for p in consumer.lag().values())

        # New events: the end moves before the consumer reads them.
        more = populate(log.store, orders=4, items=1, customers=1, prefix="more-")
        log.publish()
        lag = consumer.lag()
        assert sum(p.lag for p in lag.values()) >= len(more)
        assert all(p.end > p.position for p in lag.values() if p.lag)
        assert sorted(positions(read_to_end(consumer))) == [r.position for r in more]
        assert consumer.caught_up()
        assert all(p.lag == 0 for p in consumer.lag().values())

    def test_subscribe_asks_where_each_partition_resumes(
        self, log_under_test: LogUnderTest
    ) -> None:
        log = log_under_test
        records = populate(log.store, orders=12, items=2, customers=3)
        log.publish()
        tp, group = _largest(read_to_end(_assigned(log)))
        skip = group[len(group) // 2]
        assert skip.record is not None
        resume = StartAt(skip.offset + 1, skip.record.position)

        asked: list[list[TopicPartition]] = []

        def on_assign(partitions: list[TopicPartition]) -> dict[TopicPartition, StartAt]:
            asked.append(sorted(partitions))
            return {tp: resume}  # the others: from the start

        consumer = log.consumer()
        consumer.subscribe(log.topics, on_assign, lambda partitions: None)
        messages = read_to_end(consumer)
        assert asked == [log.partitions()]
        assert consumer.assignment() == log.partitions()
        skipped = set(positions(group[: len(group) // 2 + 1]))
        assert sorted(positions(messages)) == sorted(
            r.position for r in records if r.position not in skipped
        )

    def test_poll_returns_what_is_there_without_waiting_out_the_timeout(
        self, log_under_test: LogUnderTest
    ) -> None:
        log = log_under_test
        records = populate(log.store, orders=3, items=1, customers=1)
        log.publish()
        consumer = _assigned(log)
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

    def test_poll_returns_at_most_max_messages(self, log_under_test: LogUnderTest) -> None:
        log = log_under_test
        records = populate(log.store, orders=8, items=2)
        log.publish()
        consumer = _assigned(log)
        got: list[LogMessage] = []
        deadline = time.monotonic() + 30
        while len(got) < len(records):
            batch = consumer.poll(3, 1.0)
            assert len(batch) <= 3
            got += batch
            assert time.monotonic() < deadline
        assert sorted(positions(got)) == [r.position for r in records]

    def test_ends_is_where_a_consumer_that_skips_history_starts(
        self, log_under_test: LogUnderTest
    ) -> None:
        """`ends()`: each partition's end offset and the global position of its
        last event; a consumer assigned there reads only what comes later."""
        log = log_under_test
        populate(log.store, orders=9, items=2, customers=2)
        log.publish()
        everything = by_partition(read_to_end(_assigned(log)))

        consumer = log.consumer()
        ends = consumer.ends(log.partitions())
        assert sorted(ends) == log.partitions()
        for tp, end in ends.items():
            group = everything.get(tp, [])
            assert end.last_position == max(positions(group), default=0), tp
            assert end.offset > max((m.offset for m in group), default=-1), tp

        consumer.assign(ends)
        assert read_to_end(consumer) == []
        more = populate(log.store, orders=3, items=1, customers=1, prefix="later-")
        log.publish()
        assert sorted(positions(read_to_end(consumer))) == [r.position for r in more]

    def test_partitions_counts_each_topics_partitions(self, log_under_test: LogUnderTest) -> None:
        log = log_under_test
        populate(log.store, orders=4, items=1, customers=2)
        log.publish()
        consumer = log.consumer()
        expected = Counter(tp.topic for tp in log.partitions())
        assert {t: consumer.partitions(t) for t in log.topics} == {
            t: expected[t] for t in log.topics
        }


def _identity(m: LogMessage) -> tuple[str, int, int, object]:
    return (m.topic, m.partition, m.offset, m.record)
