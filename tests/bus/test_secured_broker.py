"""Brokers that ask for a login or speak TLS: the SASL/PLAIN and TLS listeners
that `scripts/services.sh` starts beside the plain one.

Settings pass through to librdkafka, the relay and consumers work with the
right account and the right CA, a refused login stops them with a clear
error instead of retrying for ever, and the password shows in no error and
no log line.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, replace

import pytest

from eventsource import EventStore
from eventsource.bus.base import StartAt, TopicPartition
from eventsource.bus.config import KafkaConfig
from eventsource.bus.kafka import KafkaLogConsumer
from eventsource.bus.relay import Relay
from eventsource.errors import KafkaAuthenticationError
from eventsource.settings import Settings
from tests.bus.children import Child, cli_env
from tests.bus.conftest import PARTITIONS
from tests.bus.model import populate

pytestmark = pytest.mark.kafka

WRONG_PASSWORD = "n0t-the-pa55word"


@dataclass(frozen=True)
class SaslAccount:
    servers: str
    username: str
    password: str


def service_env(name: str) -> str:
    """A variable `scripts/services.sh env` prints; a clear failure when it is unset."""
    value = os.environ.get(name, "")
    if not value:
        pytest.fail(
            f'{name} is not set: run `make test`, or `eval "$(bash scripts/services.sh env)"`'
        )
    return value


@pytest.fixture
def sasl_account(kafka_servers: str) -> SaslAccount:
    """The test broker's SASL/PLAIN listener and its account."""
    del kafka_servers  # the same broker: required running
    return SaslAccount(
        service_env("TEST_SERVICES_KAFKA_SASL_SERVERS"),
        service_env("TEST_SERVICES_KAFKA_SASL_USERNAME"),
        service_env("TEST_SERVICES_KAFKA_SASL_PASSWORD"),
    )


@pytest.fixture
def tls_listener(kafka_servers: str) -> tuple[str, str]:
    """The test broker's TLS listener and the file of the CA that signed its certificate."""
    del kafka_servers  # the same broker: required running
    return service_env("TEST_SERVICES_KAFKA_SSL_SERVERS"), service_env("TEST_SERVICES_KAFKA_SSL_CA")


@dataclass(frozen=True)
class MutualTls:
    servers: str
    ca: str
    certificate: str
    key: str


@pytest.fixture
def mtls_listener(kafka_servers: str) -> MutualTls:
    """The test broker's listener that asks each client for a certificate from
    the test CA, and a client certificate and key that the CA signed."""
    del kafka_servers  # the same broker: required running
    return MutualTls(
        service_env("TEST_SERVICES_KAFKA_MTLS_SERVERS"),
        service_env("TEST_SERVICES_KAFKA_SSL_CA"),
        service_env("TEST_SERVICES_KAFKA_MTLS_CERT"),
        service_env("TEST_SERVICES_KAFKA_MTLS_KEY"),
    )


def sasl_env(account: SaslAccount, password: str) -> dict[str, str]:
    """The settings a deployment would set for a secured broker."""
    return {
        "EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS": account.servers,
        "EVENTSOURCE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "EVENTSOURCE_KAFKA_SASL_MECHANISM": "PLAIN",
        "EVENTSOURCE_KAFKA_SASL_USERNAME": account.username,
        "EVENTSOURCE_KAFKA_SASL_PASSWORD": password,
    }


def config_from_settings(
    monkeypatch: pytest.MonkeyPatch, account: SaslAccount, password: str
) -> KafkaConfig:
    return config_from_env(monkeypatch, sasl_env(account, password))


def config_from_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> KafkaConfig:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return replace(KafkaConfig.from_settings(Settings()), partitions=PARTITIONS)


def read_everything(config: KafkaConfig, store: EventStore, count: int) -> list[int]:
    """The global positions of every event of the store's topics, read over SASL."""
    with KafkaLogConsumer(config) as consumer:
        consumer.assign(
            {
                TopicPartition(store.topic_for(kind), p): StartAt(0)
                for kind in ("order", "customer")
                for p in range(PARTITIONS)
            }
        )
        positions: list[int] = []
        deadline = time.monotonic() + 60
        while len(positions) < count:
            assert time.monotonic() < deadline, f"read {len(positions)} of {count}"
            positions += [m.record.position for m in consumer.poll(500, 1.0) if m.record]
    return sorted(positions)


def poll_for(consumer: KafkaLogConsumer, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        consumer.poll(100, 0.5)


def refused_everywhere(config: KafkaConfig, store: EventStore, consumer_says: str) -> str:
    """Run the relay, then a consumer, against a broker that will not have them:
    each stops within 30 s with `KafkaAuthenticationError` (the consumer's
    message matching `consumer_says`). Returns the relay's message."""
    populate(store, orders=1, items=1, customers=1)
    started = time.monotonic()
    with pytest.raises(KafkaAuthenticationError) as refused, Relay(store, config) as relay:
        relay.run(until_caught_up=True)
    assert time.monotonic() - started < 30
    with KafkaLogConsumer(config) as consumer:
        consumer.assign({TopicPartition(store.topic_for("order"), 0): StartAt(0)})
        with pytest.raises(KafkaAuthenticationError, match=consumer_says):
            poll_for(consumer, seconds=30)
    return str(refused.value)


def test_the_relay_and_consumers_log_in_with_the_configured_account(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    sasl_account: SaslAccount,
    kafka_store: EventStore,
) -> None:
    caplog.set_level(logging.DEBUG)
    config = config_from_settings(monkeypatch, sasl_account, sasl_account.password)
    assert config.options["security.protocol"] == "SASL_PLAINTEXT"
    records = populate(kafka_store, orders=6, items=2, customers=2)
    with Relay(kafka_store, config) as relay:
        assert relay.run(until_caught_up=True) == len(records)
    assert read_everything(config, kafka_store, len(records)) == [r.position for r in records]
    assert sasl_account.password not in repr(config)
    assert sasl_account.password not in caplog.text


def test_a_refused_login_stops_the_relay_and_consumers_with_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    sasl_account: SaslAccount,
    kafka_store: EventStore,
) -> None:
    caplog.set_level(logging.DEBUG)
    config = config_from_settings(monkeypatch, sasl_account, WRONG_PASSWORD)
    message = refused_everywhere(config, kafka_store, "refused the consumer's login")
    assert "Kafka refused the relay's login" in message
    assert "SASL authentication" in message
    assert "EVENTSOURCE_KAFKA_SASL_PASSWORD" in message
    assert WRONG_PASSWORD not in message
    assert WRONG_PASSWORD not in caplog.text


def test_the_relay_command_exits_on_a_refused_login_without_showing_the_password(
    sasl_account: SaslAccount, kafka_store: EventStore, kafka_servers: str
) -> None:
    populate(kafka_store, orders=1, items=1, customers=1)
    command = [sys.executable, "-m", "eventsource", "-v", "relay", "run"]
    command += ["--url", str(kafka_store.engine.url), "--context", kafka_store.context]
    env = {**cli_env(kafka_servers), **sasl_env(sasl_account, WRONG_PASSWORD)}
    code, _, err = Child(command, env).finish(timeout=60)
    assert code == 1, err
    assert "error: Kafka refused the relay's login" in err
    assert WRONG_PASSWORD not in err


def test_the_relay_and_consumers_speak_tls_to_a_broker_signed_by_the_configured_ca(
    monkeypatch: pytest.MonkeyPatch, tls_listener: tuple[str, str], kafka_store: EventStore
) -> None:
    servers, ca = tls_listener
    config = config_from_env(
        monkeypatch,
        {
            "EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS": servers,
            "EVENTSOURCE_KAFKA_SECURITY_PROTOCOL": "SSL",
            "EVENTSOURCE_KAFKA_SSL_CA_LOCATION": ca,
        },
    )
    assert config.options == {"security.protocol": "SSL", "ssl.ca.location": ca}
    records = populate(kafka_store, orders=4, items=2, customers=1)
    with Relay(kafka_store, config) as relay:
        assert relay.run(until_caught_up=True) == len(records)
    assert read_everything(config, kafka_store, len(records)) == [r.position for r in records]


def test_a_broker_certificate_not_signed_by_a_trusted_ca_stops_the_relay_and_consumers(
    monkeypatch: pytest.MonkeyPatch, tls_listener: tuple[str, str], kafka_store: EventStore
) -> None:
    servers, _ = tls_listener  # the system's CAs did not sign the test broker's certificate
    config = config_from_env(
        monkeypatch,
        {
            "EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS": servers,
            "EVENTSOURCE_KAFKA_SECURITY_PROTOCOL": "SSL",
        },
    )
    message = refused_everywhere(config, kafka_store, "consumer does not trust")
    assert "the relay does not trust Kafka's certificate" in message
    assert "certificate verify failed" in message
    assert "EVENTSOURCE_KAFKA_SSL_CA_LOCATION" in message


def test_the_relay_and_consumers_show_a_client_certificate_to_a_broker_that_asks_for_one(
    monkeypatch: pytest.MonkeyPatch, mtls_listener: MutualTls, kafka_store: EventStore
) -> None:
    config = config_from_env(
        monkeypatch,
        {
            "EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS": mtls_listener.servers,
            "EVENTSOURCE_KAFKA_SECURITY_PROTOCOL": "SSL",
            "EVENTSOURCE_KAFKA_SSL_CA_LOCATION": mtls_listener.ca,
            "EVENTSOURCE_KAFKA_SSL_CERTIFICATE_LOCATION": mtls_listener.certificate,
            "EVENTSOURCE_KAFKA_SSL_KEY_LOCATION": mtls_listener.key,
        },
    )
    assert config.options["ssl.certificate.location"] == mtls_listener.certificate
    records = populate(kafka_store, orders=4, items=2, customers=1)
    with Relay(kafka_store, config) as relay:
        assert relay.run(until_caught_up=True) == len(records)
    assert read_everything(config, kafka_store, len(records)) == [r.position for r in records]


def test_a_broker_that_refuses_the_client_certificate_stops_the_relay_and_consumers(
    monkeypatch: pytest.MonkeyPatch, mtls_listener: MutualTls, kafka_store: EventStore
) -> None:
    config = config_from_env(
        monkeypatch,
        {  # the CA is right, but no client certificate is configured
            "EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS": mtls_listener.servers,
            "EVENTSOURCE_KAFKA_SECURITY_PROTOCOL": "SSL",
            "EVENTSOURCE_KAFKA_SSL_CA_LOCATION": mtls_listener.ca,
        },
    )
    message = refused_everywhere(config, kafka_store, "refused the consumer's TLS client")
    assert "Kafka refused the relay's TLS client certificate" in message
    assert "EVENTSOURCE_KAFKA_SSL_CERTIFICATE_LOCATION" in message
