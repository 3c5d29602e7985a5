"""Kafka client settings: safe whatever librdkafka's defaults are, passed through
otherwise, and never showing a secret."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from eventsource import ConfigurationError, EventStore, Settings
from eventsource.bus.config import KafkaConfig
from eventsource.bus.kafka import KafkaLogConsumer
from eventsource.bus.relay import Relay
from tests.bus.model import populate


def test_producers_are_idempotent_with_acks_all_and_consumers_read_committed() -> None:
    config = KafkaConfig("broker:9092")
    producer = config.producer("relay-1")
    assert producer["enable.idempotence"] is True
    assert producer["acks"] == "all"
    assert producer["transactional.id"] == "relay-1"
    assert "transactional.id" not in config.producer()
    consumer = config.consumer("group-1")
    assert consumer["isolation.level"] == "read_committed"
    assert consumer["enable.auto.commit"] is False
    assert consumer["enable.auto.offset.store"] is False
    assert consumer["auto.offset.reset"] == "earliest"
    assert consumer["group.id"] == "group-1"
    assert consumer["bootstrap.servers"] == producer["bootstrap.servers"] == "broker:9092"


def test_other_options_pass_through() -> None:
    options = {"security.protocol": "SASL_SSL", "client.rack": "eu-1a", "linger.ms": 20}
    config = KafkaConfig("broker:9092", options)
    for client in (config.producer("r"), config.consumer("g"), config.client()):
        assert client["security.protocol"] == "SASL_SSL"
        assert client["client.rack"] == "eu-1a"
    assert config.producer()["linger.ms"] == 20


def test_a_consumer_option_given_replaces_the_default() -> None:
    config = KafkaConfig("broker:9092", {"max.partition.fetch.bytes": 1_048_576})
    assert config.consumer("g")["max.partition.fetch.bytes"] == 1_048_576
    assert config.consumer("g", **{"fetch.wait.max.ms": 5})["fetch.wait.max.ms"] == 5


@pytest.mark.parametrize(
    ("kind", "option", "value"),
    [
        ("producer", "enable.idempotence", False),
        ("producer", "enable.idempotence", "false"),
        ("producer", "acks", "1"),
        ("producer", "acks", 0),
        ("consumer", "isolation.level", "read_uncommitted"),
        ("consumer", "enable.auto.commit", "true"),
        ("consumer", "enable.auto.offset.store", True),
    ],
)
def test_an_option_that_breaks_exactly_once_is_refused_by_name(
    kind: str, option: str, value: object
) -> None:
    config = KafkaConfig("broker:9092", {option: value})
    make: Callable[[], object] = (
        config.producer if kind == "producer" else (lambda: config.consumer("g"))
    )
    with pytest.raises(ConfigurationError) as caught:
        make()
    assert option in str(caught.value)
    assert "refused" in str(caught.value)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("enable.idempotence", "true"),
        ("enable.idempotence", 1),
        ("acks", "all"),
        ("acks", "-1"),
        ("acks", -1),
    ],
)
def test_the_safe_value_may_be_spelled_any_way_librdkafka_accepts(
    option: str, value: object
) -> None:
    producer = KafkaConfig("broker:9092", {option: value}).producer()
    assert producer["enable.idempotence"] is True
    assert producer["acks"] == "all"


def test_settings_fill_the_config_and_its_repr_hides_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS", "b1:9092,b2:9092")
    monkeypatch.setenv("EVENTSOURCE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("EVENTSOURCE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("EVENTSOURCE_KAFKA_SASL_USERNAME", "relay")
    monkeypatch.setenv("EVENTSOURCE_KAFKA_SASL_PASSWORD", "pa55-w0rd")
    monkeypatch.setenv("EVENTSOURCE_KAFKA_CONFIG", '{"ssl.key.password": "k3y-pa55"}')
    monkeypatch.setenv("EVENTSOURCE_TOPIC_PARTITIONS", "12")
    config = KafkaConfig.from_settings(Settings())
    assert config.bootstrap_servers == "b1:9092,b2:9092"
    assert config.partitions == 12
    client = config.client()
    assert client["sasl.password"] == "pa55-w0rd"
    assert client["ssl.key.password"] == "k3y-pa55"
    assert client["sasl.username"] == "relay"
    shown = repr(config)
    assert "pa55-w0rd" not in shown
    assert "k3y-pa55" not in shown
    assert "relay" in shown
    assert "pa55-w0rd" not in repr(Settings())


def test_a_client_certificate_comes_from_its_own_settings_and_its_key_password_is_hidden(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS", "b1:9093")
    monkeypatch.setenv("EVENTSOURCE_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("EVENTSOURCE_KAFKA_SSL_CERTIFICATE_LOCATION", "/etc/kafka/client.pem")
    monkeypatch.setenv("EVENTSOURCE_KAFKA_SSL_KEY_LOCATION", "/etc/kafka/client.key")
    monkeypatch.setenv("EVENTSOURCE_KAFKA_SSL_KEY_PASSWORD", "k3y-pa55")
    config = KafkaConfig.from_settings(Settings())
    client = config.client()
    assert client["ssl.certificate.location"] == "/etc/kafka/client.pem"
    assert client["ssl.key.location"] == "/etc/kafka/client.key"
    assert client["ssl.key.password"] == "k3y-pa55"
    assert "k3y-pa55" not in repr(config)
    assert "k3y-pa55" not in repr(Settings())


def test_without_bootstrap_servers_kafka_is_not_configured() -> None:
    with pytest.raises(ConfigurationError, match="EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS"):
        KafkaConfig.from_settings(Settings())


@pytest.mark.kafka
def test_secrets_never_reach_the_logs(
    kafka_store: EventStore, kafka_servers: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Even with librdkafka's own debug output on, through the relay and a consumer."""
    caplog.set_level(logging.DEBUG)
    options = {
        "sasl.username": "bob",
        "sasl.password": "pa55-w0rd",
        "ssl.key.password": "k3y-pa55",
        "debug": "broker,security,conf",
    }
    config = KafkaConfig(kafka_servers, options, partitions=1)
    populate(kafka_store, orders=2, items=1, customers=0)
    with Relay(kafka_store, config) as relay:
        assert relay.run(until_caught_up=True) == 4
    KafkaLogConsumer(config).close()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert len(caplog.records) > 10  # librdkafka did talk
    assert "pa55-w0rd" not in text
    assert "k3y-pa55" not in text
