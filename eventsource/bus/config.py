"""librdkafka configuration with safe defaults, whatever librdkafka's own are."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from eventsource.errors import BrokerUnavailable, ConfigurationError, KafkaAuthenticationError
from eventsource.retry import Outage
from eventsource.settings import Settings, redact

log = logging.getLogger(__name__)
kafka_log = logging.getLogger("eventsource.kafka")
# librdkafka's own log lines (a FAIL line per connection attempt, many a
# second while a broker is away) go here at DEBUG: the error callbacks
# report the same failures once per outage, at WARNING.
librdkafka_log = logging.getLogger("eventsource.kafka.librdkafka")


class _Debug:
    """librdkafka's `logger`: every line at DEBUG."""

    def log(self, level: int, msg: str, *args: Any) -> None:
        librdkafka_log.debug(msg, *args)


_librdkafka_logger = _Debug()

# Settings that exactly-once depends on: a pass-through value that contradicts
# one of these is refused rather than silently applied.
PRODUCER_SAFETY: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
}
CONSUMER_SAFETY: dict[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "isolation.level": "read_committed",
}
PRODUCER_DEFAULTS: dict[str, Any] = {
    # Java's default partitioner, so that every client puts a key in the same partition.
    "partitioner": "murmur2_random",
    "linger.ms": 5,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "transaction.timeout.ms": 60_000,
    "message.timeout.ms": 60_000,
}
CONSUMER_DEFAULTS: dict[str, Any] = {
    "auto.offset.reset": "earliest",
    "enable.partition.eof": True,
    "partition.assignment.strategy": "roundrobin",
    "session.timeout.ms": 10_000,
    "heartbeat.interval.ms": 1_000,
    "max.poll.interval.ms": 300_000,
    "fetch.wait.max.ms": 100,
    # Up to 10 MiB of one partition per fetch (librdkafka's default is 1 MiB):
    # a worker catching up folded a topic 8 to 18% faster, since each fetch
    # costs the broker and librdkafka's thread CPU that the fold needs, while
    # quix-streams, which folds slower, gained nothing from it. Memory stays
    # bounded by `fetch.max.bytes` and `queued.max.messages.kbytes`.
    "max.partition.fetch.bytes": 10 * 1024 * 1024,
}
_TRUE = {"true", "1", "yes"}


@dataclass(frozen=True)
class KafkaConfig:
    """Where Kafka is and how to talk to it.

    `options` are passed through to librdkafka (SASL, SSL, anything else);
    they may hold secrets, so this object's repr and every log line redact them.
    """

    bootstrap_servers: str
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    partitions: int = 6
    topic_prefix: str = ""

    def __repr__(self) -> str:
        return (
            f"KafkaConfig(bootstrap_servers={self.bootstrap_servers!r},"
            f" options={redact(dict(self.options))!r}, partitions={self.partitions})"
        )

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> KafkaConfig:
        """Kafka as the `EVENTSOURCE_*` settings configure it (`Settings()` if none given)."""
        settings = settings or Settings()
        config = settings.librdkafka_config()
        servers = config.pop("bootstrap.servers")
        return cls(servers, config, settings.topic_partitions, settings.topic_prefix)

    def physical(self, topic: str) -> str:
        """The Kafka topic that carries the log topic `topic`."""
        return self.topic_prefix + topic

    def logical(self, topic: str) -> str:
        """The log topic a Kafka topic carries (its name without the prefix)."""
        return topic[len(self.topic_prefix) :] if topic.startswith(self.topic_prefix) else topic

    def client(self, **extra: Any) -> dict[str, Any]:
        """Options for any client: admin, producer or consumer."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "logger": _librdkafka_logger,
            "error_cb": _log_error,
        }
        config.update(self.options)
        config.update(extra)
        return config

    def producer(self, transactional_id: str | None = None, **extra: Any) -> dict[str, Any]:
        """A producer's options: idempotent, acks=all, transactional when given an id."""
        config = {**PRODUCER_DEFAULTS, **self.client(**extra)}
        _enforce(config, PRODUCER_SAFETY, "producer")
        if transactional_id is not None:
            config["transactional.id"] = transactional_id
        return config

    def consumer(self, group_id: str, **extra: Any) -> dict[str, Any]:
        """A consumer's options: read_committed, no auto commit, from the earliest offset."""
        config = {**CONSUMER_DEFAULTS, **self.client(**extra), "group.id": group_id}
        _enforce(config, CONSUMER_SAFETY, "consumer")
        return config


def _enforce(config: dict[str, Any], safety: Mapping[str, Any], kind: str) -> None:
    for key, required in safety.items():
        given = config.get(key)
        if given is not None and _normal(given) != _normal(required):
            raise ConfigurationError(
                f"Kafka {kind} option {key}={given!r} is refused: eventsource's exactly-once"
                f" guarantees need {key}={required!r}"
            )
        config[key] = required


def _normal(value: Any) -> str:
    text = str(value).lower()
    if text == "-1":  # acks=-1 is librdkafka's (and Java's) other name for acks=all
        return "all"
    return "true" if text in _TRUE else "false" if text in {"false", "0", "no"} else text


def kafka_error(exc: KafkaException) -> KafkaError:
    """The `KafkaError` inside a `KafkaException` (wrapping a bare message if need be)."""
    inner = exc.args[0] if exc.args else None
    if isinstance(inner, KafkaError):
        return inner
    return KafkaError(KafkaError._FAIL, str(inner))


class ClientErrors:
    """librdkafka's error callback for one client.

    librdkafka retries a broker that is away by itself and reports every
    failed attempt here, many a second: this turns them into one outage,
    logged when it starts and when the client says it is over (`recovered`).
    It also remembers the errors that retrying cannot cure (a refused login,
    a broker certificate this client does not trust, a client certificate
    the broker does not accept), which librdkafka would otherwise retry for
    ever while the client's calls time out.
    """

    def __init__(self, client: str = "Kafka client") -> None:
        # What was refused (`_LOGIN`, `_SERVER_CERTIFICATE`, `_CLIENT_CERTIFICATE`) and how.
        self.refused: tuple[str, KafkaError] | None = None
        self.outage = Outage(client, kafka_log)

    def __call__(self, error: KafkaError) -> None:
        kind = _refusal(error)
        if kind is not None:
            self.refused = (kind, error)
            kafka_log.error("Kafka: %s", error.str())
            return
        if error.fatal():
            kafka_log.error("Kafka: fatal: %s", error.str())
            return
        self.outage.begin(BrokerUnavailable(error.str()))

    def recovered(self) -> None:
        """The client got an answer from the broker: an outage, if any, is over."""
        if self.outage.active:
            self.outage.end()

    def raise_if_refused(self, client: str) -> None:
        """Raise `KafkaAuthenticationError` if the broker and this client could
        not agree on who the other is."""
        if self.refused is None:
            return
        kind, error = self.refused
        reason = error.str()
        if kind == _SERVER_CERTIFICATE:
            raise KafkaAuthenticationError(
                f"the {client} does not trust Kafka's certificate: {reason}; check"
                " EVENTSOURCE_KAFKA_SSL_CA_LOCATION (the CA that signed the brokers'"
                " certificates) and that the bootstrap servers are named as in them"
            )
        if kind == _CLIENT_CERTIFICATE:
            raise KafkaAuthenticationError(
                f"Kafka refused the {client}'s TLS client certificate: {reason}; check"
                " EVENTSOURCE_KAFKA_SSL_CERTIFICATE_LOCATION and"
                " EVENTSOURCE_KAFKA_SSL_KEY_LOCATION (a certificate that the brokers'"
                " CA signed, and its key)"
            )
        raise KafkaAuthenticationError(
            f"Kafka refused the {client}'s login: {reason}; check the"
            " security settings (EVENTSOURCE_KAFKA_SECURITY_PROTOCOL,"
            " EVENTSOURCE_KAFKA_SASL_MECHANISM, EVENTSOURCE_KAFKA_SASL_USERNAME,"
            " EVENTSOURCE_KAFKA_SASL_PASSWORD, EVENTSOURCE_KAFKA_CONFIG)"
        )


_LOGIN = "login"
_SERVER_CERTIFICATE = "server certificate"
_CLIENT_CERTIFICATE = "client certificate"
# The TLS alerts a broker sends when it does not accept the client's
# certificate (or the client sent none).
_CLIENT_CERTIFICATE_ALERTS = (
    "alert bad certificate",
    "alert certificate required",
    "alert unknown ca",
    "alert certificate unknown",
    "alert certificate expired",
    "alert certificate revoked",
)


def _refusal(error: KafkaError) -> str | None:
    """Which identity check failed, if `error` is one that retrying cannot cure.

    A failed handshake can also be a broker going away mid-way (retried);
    a certificate that does not verify fails the same way every time.
    """
    code = error.code()
    if code == KafkaError._AUTHENTICATION:
        return _LOGIN
    if code not in (KafkaError._SSL, KafkaError._TRANSPORT):
        return None
    text = error.str()
    if code == KafkaError._SSL and "certificate verify failed" in text:
        return _SERVER_CERTIFICATE
    if any(alert in text for alert in _CLIENT_CERTIFICATE_ALERTS):
        return _CLIENT_CERTIFICATE
    return None


class _RepeatFilter:
    """The error callback of clients without `ClientErrors` (admin): one line
    per kind of error a minute, not one per attempt."""

    EVERY = 60.0

    def __init__(self) -> None:
        self._last: dict[int, float] = {}
        self._lock = threading.Lock()

    def __call__(self, error: Any) -> None:
        code = error.code() if isinstance(error, KafkaError) else 0
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(code, -self.EVERY) < self.EVERY:
                return
            self._last[code] = now
        # librdkafka reports broker outages here and keeps retrying by itself.
        kafka_log.warning("Kafka: %s (retrying; said once a minute)", error)


_log_error = _RepeatFilter()
