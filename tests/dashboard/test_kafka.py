"""The dashboard with Kafka as the log: the relay's state and backlog, lag per partition."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventsource import EventStore, Settings
from eventsource.bus.config import KafkaConfig
from eventsource.bus.relay import Relay
from eventsource.dashboard import Sampler, Sources, Watched
from eventsource.store.engine import create_engine
from tests.conftest import unique
from tests.projections.apps import balances
from tests.projections.streams import populate

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
