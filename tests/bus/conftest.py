"""Fixtures of the bus tests: SQLite stores, Kafka contexts that clean up after
themselves, and the log backends that the consumer contract runs against."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from eventsource import EventStore
from eventsource.bus.admin import TopicAdmin
from eventsource.bus.config import KafkaConfig
from tests.conftest import unique

PARTITIONS = 3


@pytest.fixture
def kafka_config(kafka_servers: str) -> KafkaConfig:
    """`KafkaConfig` of the test broker, with 3 partitions per new topic."""
    return KafkaConfig(kafka_servers, partitions=PARTITIONS)


@pytest.fixture
def kafka_context(kafka_config: KafkaConfig) -> Iterator[str]:
    """A bounded context name of this test alone; its topics are deleted after."""
    context = unique("bus")
    yield context
    admin = TopicAdmin(kafka_config)
    admin.delete(admin.list_topics(f"{context}."))


@pytest.fixture
def sqlite_store_factory(
    database_url_factory: Callable[..., str],
) -> Iterator[Callable[..., EventStore]]:
    """`sqlite_store_factory(context=..., **overrides)`: a migrated SQLite store."""
    stores: list[EventStore] = []

    def make(**overrides: Any) -> EventStore:
        url = overrides.pop("url", None) or database_url_factory("sqlite")
        overrides.setdefault("context", unique("bus"))
        store = EventStore(url, **overrides)
        store.create_schema()
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def kafka_store(sqlite_store_factory: Callable[..., EventStore], kafka_context: str) -> EventStore:
    """A SQLite store whose context's Kafka topics are removed after the test."""
    return sqlite_store_factory(context=kafka_context)
