"""Fixtures of the stream tests: a source context on SQLite, relayed to Kafka
topics of this test alone, and an independent check of an output topic."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from eventsource import EventStore, StoredEvent
from eventsource.bus.admin import TopicAdmin
from eventsource.bus.config import KafkaConfig
from eventsource.bus.relay import Relay
from tests.bus.model import Delivered, read_all, read_committed
from tests.conftest import unique
from tests.projections.streams import clean_env
from tests.streams.apps import expected_outputs

PARTITIONS = 3


@dataclass
class Source:
    """A context whose account events are relayed to `<context>.account`."""

    context: str
    store: EventStore
    url: str
    directory: Path  # for logs of processes
    kafka: KafkaConfig | None = None
    _relay: Relay | None = field(default=None, repr=False)

    @property
    def topic(self) -> str:
        return f"{self.context}.account"

    @property
    def output(self) -> str:
        return f"{self.context}.movement"

    def publish(self) -> int:
        assert self.kafka is not None
        if self._relay is None:
            self._relay = Relay(self.store, self.kafka)
        return self._relay.run(until_caught_up=True)

    def records(self) -> list[StoredEvent]:
        return read_all(self.store)

    def env(self, name: str, **extra: str) -> dict[str, str]:
        """The environment of a `transform run tests.streams.apps:movements` process."""
        variables = {
            "STTEST_INPUT": self.topic,
            "STTEST_OUTPUT": self.output,
            "STTEST_NAME": name,
        }
        if self.kafka is not None:
            variables["EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS"] = self.kafka.bootstrap_servers
            variables["EVENTSOURCE_TOPIC_PARTITIONS"] = str(self.kafka.partitions)
        variables.update(extra)
        return clean_env(**variables)

    def close(self) -> None:
        if self._relay is not None:
            self._relay.close()
        self.store.close()
        if self.kafka is not None:
            admin = TopicAdmin(self.kafka)
            admin.delete(admin.list_topics(f"{self.context}."))


@pytest.fixture
def kafka_config(kafka_servers: str) -> KafkaConfig:
    return KafkaConfig(kafka_servers, partitions=PARTITIONS)


@pytest.fixture
def source_factory(tmp_path: Path) -> Iterator[Callable[..., Source]]:
    """`source_factory(kafka=None)`: a fresh SQLite source context (relayed to `kafka`)."""
    made: list[Source] = []

    def make(kafka: KafkaConfig | None = None) -> Source:
        context = unique("st")
        url = f"sqlite:///{tmp_path / context}.db"
        store = EventStore(url, context=context)
        store.create_schema()
        source = Source(context, store, url, tmp_path, kafka)
        made.append(source)
        return source

    yield make
    for source in made:
        source.close()


@dataclass
class Judgement:
    delivered: int
    missing: list[tuple[str, str]]
    duplicated: list[tuple[str, str]]
    unexpected: list[tuple[str, str]]
    wrong: list[tuple[str, str]]
    out_of_order_keys: list[str]
    split_keys: list[str]

    @property
    def exactly_once(self) -> bool:
        return not (
            self.missing
            or self.duplicated
            or self.unexpected
            or self.wrong
            or self.out_of_order_keys
            or self.split_keys
        )

    def __str__(self) -> str:
        return (
            f"delivered {self.delivered}; missing {len(self.missing)} {self.missing[:5]};"
            f" duplicated {len(self.duplicated)} {self.duplicated[:5]}; unexpected"
            f" {self.unexpected[:5]}; wrong {self.wrong[:5]}; keys out of order"
            f" {self.out_of_order_keys[:5]}; keys split {self.split_keys[:5]}"
        )


def judge_outputs(records: list[StoredEvent], delivered: list[Delivered]) -> Judgement:
    """Each input that `movements` turns into records appears exactly once
    downstream (per output type), intact, and each key's records are in
    their inputs' order, in one partition."""
    expected = expected_outputs(records)
    seen = Counter((d.headers["es-causation-id"].decode(), _type(d)) for d in delivered)
    wrong = []
    by_key: dict[str, list[Delivered]] = defaultdict(list)
    for d in delivered:
        ident = (d.headers["es-causation-id"].decode(), _type(d))
        value = orjson.loads(d.value or b"null")
        want = expected.get(ident)
        if want is not None and (
            d.key != str(want["key"]).encode()
            or value != {"amount": want["amount"], "seq": want["seq"]}
            or d.headers["es-aggregate-id"] != d.key
        ):
            wrong.append(ident)
        by_key[(d.key or b"").decode()].append(d)
    rank = {"st.movement": 0, "st.large_movement": 1}
    out_of_order, split = [], []
    for key, items in by_key.items():
        if len({(d.topic, d.partition) for d in items}) > 1:
            split.append(key)
        items.sort(key=lambda d: d.offset)
        order = [(orjson.loads(d.value or b"{}")["seq"], rank[_type(d)]) for d in items]
        if order != sorted(set(order)):
            out_of_order.append(key)
    return Judgement(
        delivered=len(delivered),
        missing=sorted(set(expected) - set(seen)),
        duplicated=sorted(k for k, n in seen.items() if n > 1),
        unexpected=sorted(set(seen) - set(expected)),
        wrong=wrong,
        out_of_order_keys=out_of_order,
        split_keys=split,
    )


def _type(d: Delivered) -> str:
    return d.headers["es-event-type"].decode()


def read_outputs(source: Source, timeout: float = 60.0) -> list[Delivered]:
    assert source.kafka is not None
    return read_committed(source.kafka.bootstrap_servers, [source.output], timeout=timeout)
