"""Store topics keep their history forever; an existing topic that would not is refused."""

from __future__ import annotations

import socket

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from eventsource import EventStore, Repository
from eventsource.bus.admin import TopicAdmin
from eventsource.bus.config import KafkaConfig
from eventsource.bus.relay import Relay
from eventsource.errors import BrokerUnavailable, TopicConfigError
from tests.bus.model import BusOrder

pytestmark = pytest.mark.kafka


def describe(servers: str, topic: str) -> dict[str, str | None]:
    admin = AdminClient({"bootstrap.servers": servers})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(30)
    return {name: entry.value for name, entry in entries.items()}


def create_by_hand(servers: str, topic: str, config: dict[str, str], partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": servers})
    new = NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config)
    admin.create_topics([new])[topic].result(30)


def test_topics_are_created_with_the_configured_partitions_and_infinite_retention(
    kafka_context: str, kafka_servers: str
) -> None:
    admin = TopicAdmin(KafkaConfig(kafka_servers, partitions=4))
    topics = [f"{kafka_context}.order", f"{kafka_context}.customer"]
    admin.ensure(topics)
    assert admin.list_topics(f"{kafka_context}.") == dict.fromkeys(topics, 4)
    for topic in topics:
        config = describe(kafka_servers, topic)
        assert config["retention.ms"] == "-1"
        assert config["retention.bytes"] == "-1"
        assert config["cleanup.policy"] == "delete"
    # Ensuring again, from a fresh admin that has to look at the broker, is fine.
    TopicAdmin(KafkaConfig(kafka_servers, partitions=4)).ensure(topics)
    assert admin.partitions(topics[0]) == 4


def test_an_explicit_partition_count_wins(kafka_context: str, kafka_config: KafkaConfig) -> None:
    admin = TopicAdmin(kafka_config)
    admin.ensure([f"{kafka_context}.order"], partitions=2)
    assert admin.partitions(f"{kafka_context}.order") == 2
    assert admin.partitions(f"{kafka_context}.missing") == 0


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"retention.ms": "60000"}, "retention.ms=60000"),
        ({"retention.ms": "-1", "cleanup.policy": "compact"}, "cleanup.policy=compact"),
        ({"retention.ms": "-1", "cleanup.policy": "compact,delete"}, "cleanup.policy=compact"),
        ({"retention.ms": "-1", "retention.bytes": "1073741824"}, "retention.bytes=1073741824"),
    ],
    ids=["finite-retention", "compacted", "compact-and-delete", "size-limited"],
)
def test_an_existing_topic_that_would_lose_history_is_refused(
    kafka_context: str, kafka_config: KafkaConfig, kafka_servers: str, config, reason: str
) -> None:
    topic = f"{kafka_context}.order"
    create_by_hand(kafka_servers, topic, config)
    with pytest.raises(TopicConfigError) as caught:
        TopicAdmin(kafka_config).ensure([topic])
    assert caught.value.topic == topic
    assert topic in str(caught.value)
    assert reason in str(caught.value)
    with pytest.raises(TopicConfigError):
        TopicAdmin(kafka_config).check([topic])


def test_the_relay_stops_on_a_topic_that_would_lose_history(
    kafka_store: EventStore, kafka_config: KafkaConfig, kafka_servers: str
) -> None:
    """A misconfigured topic is not a passing outage: the relay says so and stops
    instead of retrying forever, and publishes nothing."""
    topic = kafka_store.topic_for("order")
    create_by_hand(kafka_servers, topic, {"retention.ms": "60000"})
    Repository(kafka_store, BusOrder).save(BusOrder.place("o-1"))
    with Relay(kafka_store, kafka_config) as relay, pytest.raises(TopicConfigError) as caught:
        relay.run(until_caught_up=True)
    assert caught.value.topic == topic
    assert relay.relayed == 0


def test_delete_removes_topics_and_ignores_missing_ones(
    kafka_context: str, kafka_config: KafkaConfig
) -> None:
    admin = TopicAdmin(kafka_config)
    topic = f"{kafka_context}.order"
    admin.ensure([topic])
    admin.delete([topic, f"{kafka_context}.never-created"])
    assert topic not in admin.list_topics(f"{kafka_context}.")


def test_a_broker_that_is_not_there_is_an_outage_to_wait_out_not_a_crash() -> None:
    # The relay and transforms retry BrokerUnavailable; any other error would
    # end the process while Kafka is merely away.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    admin = TopicAdmin(KafkaConfig(f"127.0.0.1:{port}"), timeout=2.0)
    with pytest.raises(BrokerUnavailable, match=f"127.0.0.1:{port}"):
        admin.ensure(["nowhere.topic"])
