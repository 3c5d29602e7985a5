"""The dashboard with Kafka as the log: the relay's state and backlog, lag per partition,
and a transform's group, committed offsets and throughput."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventsource import EventStore, Settings
from eventsource.bus.admin import TopicAdmin
from eventsource.bus.config import KafkaConfig
from eventsource.bus.relay import Relay
from eventsource.dashboard import Sampler, Sources, Watched, WatchedTransform
from eventsource.store.engine import create_engine
from eventsource.streams.kafka import TransformRunner
from tests.conftest import unique
from tests.projections.apps import balances
from tests.projections.streams import populate
from tests.streams.apps import movements_of, record_movements

pytestmark = pytest.mark.kafka


def test_on_kafka_the_page_shows_the_relay_backlog_and_lag_per_partition(
    kafka_servers: str, tmp_path: Path
) -> None:
    context = unique("dash")
    prefix = unique("t") + "."
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with EventStore(url, context=context) as store:
        store.create_schema()
        relayed = populate(store, events=120, accounts=12)
        kafka = KafkaConfig(kafka_servers, partitions=3, topic_prefix=prefix)
        with Relay(store, kafka) as relay:
            relay.run(until_caught_up=True)
        late = populate(store, events=20, accounts=4, prefix="late", seed=2)
    settings = Settings(
        database_url=url,
        context=context,
        kafka_bootstrap_servers=kafka_servers,
        topic_prefix=prefix,
        topic_partitions=3,
    )
    cls = balances(context, unique("pj_dash"))
    sources = Sources(settings, [Watched(cls, context)], {context: create_engine(url)})
    sampler = Sampler(sources)
    try:
        snapshot = sampler.sample()
    finally:
        sampler.close()
        admin = TopicAdmin(kafka)
        admin.delete(admin.list_topics(prefix))
    assert snapshot["mode"] == f"Kafka {kafka_servers}"
    [shown] = snapshot["contexts"]
    assert shown["error"] is None
    relay_state = shown["relay"]
    assert (relay_state["head"], relay_state["on_kafka"]) == (relayed + late, relayed)
    assert relay_state["backlog"] == late
    assert relay_state["status"] == "not running"  # it ran, caught up and left
    [consumer] = snapshot["consumers"]
    assert consumer["error"] is None, consumer["error"]
    assert consumer["status"] == "never run"
    assert len(consumer["partitions"]) == 3
    # In events: everything the store holds, relayed or not; in offsets: what Kafka holds.
    assert consumer["lag_events"] == relayed + late
    assert sum(p["lag"] for p in consumer["partitions"]) >= relayed


def test_on_kafka_a_transform_shows_its_group_committed_offsets_lag_and_throughput(
    kafka_servers: str, tmp_path: Path
) -> None:
    context = unique("dashst")
    url = f"sqlite:///{tmp_path / 'source.db'}"
    kafka = KafkaConfig(kafka_servers, partitions=3)
    store = EventStore(url, context=context)
    store.create_schema()
    admin = TopicAdmin(kafka)
    try:
        record_movements(store, accounts=10, events=150, seed=5)
        with Relay(store, kafka) as relay:
            relay.run(until_caught_up=True)
        transform = movements_of(f"{context}.account", f"{context}.movement", unique("st.dash"))
        settings = Settings(
            database_url=url,
            context=context,
            kafka_bootstrap_servers=kafka_servers,
            topic_partitions=3,
        )
        sources = Sources(settings, [WatchedTransform(transform)], {context: create_engine(url)})
        sampler = Sampler(sources, interval=0.5)  # not started: these two samples alone
        try:
            [before] = sampler.sample()["consumers"]
            with TransformRunner(transform, kafka) as runner:
                processed = runner.run(until_caught_up=True)
            [after] = sampler.sample()["consumers"]
        finally:
            sampler.close()
    finally:
        store.close()
        admin.delete(admin.list_topics(f"{context}."))
    for shown in (before, after):
        assert shown["error"] is None, shown["error"]
        assert (shown["kind"], shown["output"]) == ("transform", f"{context}.movement")
        assert shown["group"].endswith(f"eventsource-transform.{transform.name}")
        assert [p["partition"] for p in shown["partitions"]] == [0, 1, 2]
        assert shown["throughput_unit"] == "offsets / s"
    assert before["status"] == "never run"
    assert all(p["offset"] is None for p in before["partitions"])
    assert before["lag"] >= processed == 150
    assert after["status"] == "stopped"  # it ran until caught up and left the group
    assert after["group_members"] == []
    assert after["lag"] <= 3  # at most the relay's last commit marker per partition
    assert sum(p["offset"] for p in after["partitions"]) >= processed
    assert [lag for _, lag in after["lag_history"]] == [before["lag"], after["lag"]]
    assert after["throughput"] > 0
