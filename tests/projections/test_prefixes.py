"""Two environments on one cluster, told apart by their topic prefix only.

Staging and production run the same context and the same projection names
against one broker. Neither's relay fences the other's, their workers do not
join one consumer group, and each view holds its own environment's events.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from eventsource import EventStore, Worker
from eventsource.bus.admin import TopicAdmin
from eventsource.bus.config import KafkaConfig
from eventsource.bus.kafka import KafkaLogConsumer
from eventsource.bus.relay import Relay
from eventsource.projections.runner import group_id
from eventsource.store.engine import create_engine
from tests.conftest import unique
from tests.projections.apps import balances
from tests.projections.streams import assert_view_is_fold, populate, read_events_sql

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def test_two_prefixes_share_a_cluster_without_touching_each_other(
    kafka_servers: str, database_url_factory: Callable[..., str]
) -> None:
    context = unique("pfx")  # the same context name in both environments
    name = unique("pj_pfx")  # and the same projection name
    prefixes = (unique("stg") + ".", unique("prd") + ".")
    envs = {p: KafkaConfig(kafka_servers, partitions=3, topic_prefix=p) for p in prefixes}
    stores = {
        prefix: EventStore(database_url_factory("postgres"), context=context) for prefix in envs
    }
    views = {prefix: create_engine(database_url_factory("postgres")) for prefix in envs}
    try:
        for i, store in enumerate(stores.values()):
            store.create_schema()
            populate(store, events=300 + 100 * i, accounts=15, prefix=f"e{i}")
        staging, production = envs
        # Production's relay runs; staging's starts beside it and must not fence it.
        stop = threading.Event()
        failures: list[BaseException] = []
        live = Relay(stores[production], envs[production], poll_interval=0.02, stop=stop)

        def run_live() -> None:
            try:
                live.run()
            except BaseException as exc:
                failures.append(exc)

        thread = threading.Thread(target=run_live, name="production-relay")
        thread.start()
        try:
            with Relay(stores[staging], envs[staging]) as other:
                assert other.transactional_id != live.transactional_id
                other.run(until_caught_up=True)
            populate(stores[production], events=50, accounts=5, prefix="late", seed=9)
            head = stores[production].head_position()
            deadline = threading.Event()
            while live.position < head and not deadline.wait(0.1):
                pass
        finally:
            stop.set()
            thread.join(60)
            assert not thread.is_alive(), "the production relay is still running"
            live.close()
        assert failures == []

        cls = balances(context, name)
        for prefix, config in envs.items():
            group = group_id(name, config.topic_prefix)
            consumer = KafkaLogConsumer(config, group_id=group)
            worker = Worker(cls(), consumer, engine=views[prefix])
            try:
                worker.run(until_caught_up=True)
            finally:
                worker.close()
            assert_view_is_fold(views[prefix], read_events_sql(stores[prefix].engine))
        assert group_id(name, staging) != group_id(name, production)
        topics = TopicAdmin(envs[staging]).list_topics(f"{context}")
        assert topics == {}  # nothing unprefixed was made
    finally:
        for prefix, config in envs.items():
            admin = TopicAdmin(config)
            admin.delete(admin.list_topics(config.physical(f"{context}.")))
            stores[prefix].close()
            views[prefix].dispose()
