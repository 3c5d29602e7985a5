"""A small domain for the bus tests, and independent checks of what reached Kafka.

Child processes import this module (`events tail --import tests.bus.model`),
so it must not import `tests.conftest`, which clears EVENTSOURCE_* variables.

The checks read topics with a plain confluent-kafka consumer (not
`KafkaLogConsumer`) and take positions, versions and ids straight from the
message headers, so that they judge the relay and the consumers from outside.
"""

from __future__ import annotations

import itertools
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from confluent_kafka import Consumer, KafkaError
from confluent_kafka import TopicPartition as KafkaTopicPartition
from confluent_kafka.admin import AdminClient

from eventsource import Aggregate, Event, EventStore, Repository, StoredEvent, on


class BusOrderPlaced(Event):
    event_type = "bus.order_placed"

    customer: str
    total: Decimal


class BusItemAdded(Event):
    event_type = "bus.item_added"

    sku: str
    quantity: int


class BusCustomerRegistered(Event):
    event_type = "bus.customer_registered"

    name: str


class BusOrder(Aggregate, type_name="order"):
    items: int = 0

    @classmethod
    def place(cls, order_id: str, customer: str = "c-1") -> BusOrder:
        order = cls(order_id)
        order.trigger(BusOrderPlaced(customer=customer, total=Decimal("12.50")))
        return order

    def add(self, sku: str, quantity: int = 1) -> None:
        self.trigger(BusItemAdded(sku=sku, quantity=quantity))

    @on(BusOrderPlaced)
    def _placed(self, event: BusOrderPlaced) -> None:
        self.items = 0

    @on(BusItemAdded)
    def _added(self, event: BusItemAdded) -> None:
        self.items += event.quantity


class BusCustomer(Aggregate, type_name="customer"):
    name: str = ""

    @on(BusCustomerRegistered)
    def _registered(self, event: BusCustomerRegistered) -> None:
        self.name = event.name


def populate(
    store: EventStore,
    *,
    orders: int = 10,
    items: int = 3,
    customers: int = 3,
    prefix: str = "",
    seed: int = 7,
) -> list[StoredEvent]:
    """Save orders and customers so that aggregates' events interleave in the
    global log; return the records written, in global order."""
    head = store.head_position()
    rng = random.Random(seed)
    order_repo = Repository(store, BusOrder)
    customer_repo = Repository(store, BusCustomer)
    placed = [BusOrder.place(f"{prefix}o-{i}", customer=f"c-{i % 7}") for i in range(orders)]
    order_repo.save(*placed)
    for c in range(customers):
        customer = BusCustomer(f"{prefix}c-{c}")
        customer.trigger(BusCustomerRegistered(name=f"Zoë €{c}"))
        customer_repo.save(customer)
    for round_ in range(items):
        chosen = rng.sample(placed, k=max(1, len(placed) // 2 + 1))
        for order in chosen:
            order.add(f"sku-{round_}", quantity=round_ + 1)
        order_repo.save(*chosen)
        rest = [o for o in placed if o not in chosen]
        for order in rest:
            order.add(f"sku-late-{round_}")
        order_repo.save(*rest)
    return read_all(store, after=head)


def read_all(store: EventStore, after: int = 0) -> list[StoredEvent]:
    out: list[StoredEvent] = []
    while True:
        batch = store.read_log(after, 10_000)
        if not batch:
            return out
        out.extend(batch)
        after = batch[-1].position


# -- reading Kafka independently --------------------------------------------------


@dataclass(frozen=True)
class Delivered:
    """One committed message, as a plain consumer sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]

    @property
    def position(self) -> int:
        return int(self.headers["es-position"])

    @property
    def version(self) -> int:
        return int(self.headers["es-version"])

    @property
    def stream(self) -> tuple[str, str]:
        return self.headers["es-aggregate-type"].decode(), self.headers["es-aggregate-id"].decode()


def topic_partitions(servers: str, topics: Iterable[str], *, settle: float = 0.0) -> dict[str, int]:
    """Partition counts of those of `topics` that exist. A topic created a moment
    ago may not be in the broker's metadata yet: wait up to `settle` seconds."""
    admin = AdminClient({"bootstrap.servers": servers})
    wanted = list(topics)
    deadline = time.monotonic() + settle
    while True:
        metadata = admin.list_topics(timeout=30)
        if all(t in metadata.topics for t in wanted) or time.monotonic() >= deadline:
            return {t: len(metadata.topics[t].partitions) for t in wanted if t in metadata.topics}
        time.sleep(0.1)


def read_committed(
    servers: str, topics: Iterable[str], *, timeout: float = 60.0, settle: float = 5.0
) -> list[Delivered]:
    """Every committed message of `topics`, read with a plain `read_committed` consumer
    (waiting up to `settle` seconds for topics that do not show yet)."""
    partitions = topic_partitions(servers, topics, settle=settle)
    consumer = Consumer(
        {
            "bootstrap.servers": servers,
            "group.id": f"bus-check-{uuid.uuid4().hex[:12]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    wanted = {(t, p) for t, n in partitions.items() for p in range(n)}
    consumer.assign([KafkaTopicPartition(t, p, 0) for t, p in sorted(wanted)])
    out: list[Delivered] = []
    done: set[tuple[str, int]] = set()
    deadline = time.monotonic() + timeout
    try:
        while done != wanted:
            assert time.monotonic() < deadline, f"timed out; at the end of {sorted(done)} only"
            for m in consumer.consume(1000, 1.0):
                error = m.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        done.add((m.topic(), m.partition()))
                        continue
                    assert error.retriable() or not error.fatal(), str(error)
                    continue
                done.discard((m.topic(), m.partition()))
                out.append(
                    Delivered(
                        m.topic(),
                        m.partition(),
                        m.offset(),
                        m.key(),
                        m.value(),
                        dict(m.headers() or []),
                    )
                )
    finally:
        consumer.close()
    return out


@dataclass
class Verdict:
    delivered: int
    missing: list[int]
    duplicated: list[int]
    unexpected: list[int]
    out_of_order_partitions: list[str]
    out_of_order_streams: list[str]
    split_streams: list[str]
    wrong_content: list[int]

    @property
    def exactly_once(self) -> bool:
        return not (
            self.missing
            or self.duplicated
            or self.unexpected
            or self.out_of_order_partitions
            or self.out_of_order_streams
            or self.split_streams
            or self.wrong_content
        )

    def __str__(self) -> str:
        def few(items: Sequence[object]) -> str:
            return f"{len(items)} {list(items[:10])}"

        return (
            f"delivered {self.delivered}; missing {few(self.missing)}; duplicated"
            f" {few(self.duplicated)}; unexpected {few(self.unexpected)}; partitions out of"
            f" order {few(self.out_of_order_partitions)}; streams out of order"
            f" {few(self.out_of_order_streams)}; streams split over partitions"
            f" {few(self.split_streams)}; content differs {few(self.wrong_content)}"
        )


def judge(expected: Sequence[StoredEvent], delivered: Sequence[Delivered]) -> Verdict:
    """Compare what Kafka holds with the store: each event once, in order, intact."""
    by_position = {r.position: r for r in expected}
    counts = Counter(d.position for d in delivered)
    by_partition: dict[tuple[str, int], list[Delivered]] = defaultdict(list)
    by_stream: dict[tuple[str, str], list[Delivered]] = defaultdict(list)
    for d in delivered:
        by_partition[d.topic, d.partition].append(d)
        by_stream[d.stream].append(d)
    bad_partitions = []
    for (topic, partition), messages in by_partition.items():
        messages.sort(key=lambda d: d.offset)
        positions = [d.position for d in messages]
        if any(b <= a for a, b in itertools.pairwise(positions)):
            bad_partitions.append(f"{topic}[{partition}]")
    bad_streams, split = [], []
    for stream, messages in by_stream.items():
        if len({(d.topic, d.partition) for d in messages}) > 1:
            split.append(":".join(stream))
        messages.sort(key=lambda d: (d.offset, d.position))
        versions = [d.version for d in messages]
        if versions != list(range(1, len(versions) + 1)):
            bad_streams.append(":".join(stream))
    wrong = [
        d.position
        for d in delivered
        if d.position in by_position and not _same(by_position[d.position], d)
    ]
    return Verdict(
        delivered=len(delivered),
        missing=sorted(set(by_position) - set(counts)),
        duplicated=sorted(p for p, n in counts.items() if n > 1),
        unexpected=sorted(set(counts) - set(by_position)),
        out_of_order_partitions=sorted(bad_partitions),
        out_of_order_streams=sorted(bad_streams),
        split_streams=sorted(split),
        wrong_content=sorted(set(wrong)),
    )


def _same(record: StoredEvent, d: Delivered) -> bool:
    return (
        d.key == record.aggregate_id.encode()
        and d.value == record.payload.encode()
        and d.headers.get("es-event-id") == str(record.event_id).encode()
        and d.headers.get("es-event-type") == record.event_type.encode()
        and d.topic.endswith("." + record.aggregate_type)
    )
