"""The two setups every projection test runs on, behind one harness.

* `embedded-sqlite`: the source context's SQLite store is the log
  (`SqlLogConsumer`); views, positions and a reactor's own events live in
  another SQLite file.
* `kafka-postgres`: the source store (PostgreSQL) is relayed to a real Kafka
  topic of 6 partitions (`publish()`); workers read it with
  `KafkaLogConsumer`; views, positions and a reactor's events live in another
  PostgreSQL database.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from eventsource import EventStore
from eventsource.bus.admin import TopicAdmin
from eventsource.bus.base import LogConsumer
from eventsource.bus.config import KafkaConfig
from eventsource.bus.kafka import KafkaLogConsumer
from eventsource.bus.relay import Relay
from eventsource.bus.sqllog import SqlLogConsumer
from eventsource.store.engine import create_engine
from tests.conftest import KAFKA_SERVERS, unique
from tests.projections.streams import clean_env

EMBEDDED = "embedded-sqlite"
KAFKA = "kafka-postgres"
MODES = [EMBEDDED, pytest.param(KAFKA, marks=[pytest.mark.kafka, pytest.mark.postgres])]
PARTITIONS = 6


@dataclass
class Harness:
    """A source context with its store and log, and the consumer's own database."""

    mode: str
    tmp_path: Path
    context: str  # the source context: topics are "<context>.account"
    source_url: str
    views_url: str  # the consumer's context database: views, positions, reactor events
    own_context: str
    kafka: KafkaConfig | None = None
    source: EventStore = field(init=False)
    views: Engine = field(init=False)
    _own: EventStore | None = None
    _relay: Relay | None = None
    _logs: list[LogConsumer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.source = EventStore(self.source_url, context=self.context)
        self.source.create_schema()
        self.views = create_engine(self.views_url)

    @property
    def kafka_mode(self) -> bool:
        return self.kafka is not None

    @property
    def topic(self) -> str:
        return f"{self.context}.account"

    def own_store(self) -> EventStore:
        """The consumer's own context's store (a reactor saves its aggregates there)."""
        if self._own is None:
            self._own = EventStore(self.views_url, context=self.own_context)
            self._own.create_schema()
        return self._own

    def log(self, *, group: str | None = None, **options: Any) -> LogConsumer:
        """A fresh log consumer of the source context (a new group unless `group`)."""
        consumer: LogConsumer
        if self.kafka is None:
            consumer = SqlLogConsumer({self.context: self.source}, poll_interval=0.01)
        else:
            consumer = KafkaLogConsumer(self.kafka, group_id=group or unique("pjgroup"), **options)
        self._logs.append(consumer)
        return consumer

    def publish(self) -> int:
        """Kafka: relay everything stored so far to the topics. Embedded: nothing to do."""
        if self.kafka is None:
            return 0
        if self._relay is None:
            self._relay = Relay(self.source, self.kafka)
        return self._relay.run(until_caught_up=True)

    def relay(self) -> Relay:
        assert self.kafka is not None
        return Relay(self.source, self.kafka)

    def env(self, **extra: str) -> dict[str, str]:
        """Environment of a worker process of this harness (`eventsource projection run`)."""
        variables = {
            "EVENTSOURCE_DATABASE_URL": self.views_url,
            "EVENTSOURCE_CONTEXT": self.own_context,
            "PJTEST_CONTEXT": self.context,
        }
        if self.kafka is None:
            variables["EVENTSOURCE_STORES"] = json.dumps({self.context: self.source_url})
        else:
            variables["EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS"] = self.kafka.bootstrap_servers
            variables["EVENTSOURCE_TOPIC_PARTITIONS"] = str(self.kafka.partitions)
        variables.update(extra)
        return clean_env(**variables)

    def close(self) -> None:
        for consumer in self._logs:
            consumer.close()
        if self._relay is not None:
            self._relay.close()
        if self._own is not None:
            self._own.close()
        self.source.close()
        self.views.dispose()
        if self.kafka is not None:
            admin = TopicAdmin(self.kafka)
            admin.delete(admin.list_topics(f"{self.context}."))


@pytest.fixture(params=MODES)
def harness(
    request: pytest.FixtureRequest, tmp_path: Path, database_url_factory: Callable[..., str]
) -> Iterator[Harness]:
    """Each test using it runs on the embedded log + SQLite and on Kafka + PostgreSQL."""
    mode = str(request.param)
    backend = "sqlite" if mode == EMBEDDED else "postgres"
    kafka = None
    if mode == KAFKA:
        servers = request.getfixturevalue("kafka_servers")
        kafka = KafkaConfig(servers or KAFKA_SERVERS, partitions=PARTITIONS)
    made = Harness(
        mode=mode,
        tmp_path=tmp_path,
        context=unique("pjsrc"),
        source_url=database_url_factory(backend),
        views_url=database_url_factory(backend),
        own_context=unique("pjown"),
        kafka=kafka,
    )
    yield made
    made.close()
