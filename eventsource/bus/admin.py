"""Creating and checking the Kafka topics that carry a store's events.

Store topics keep their history forever (`retention.ms=-1`, no size limit, no
compaction): the topic *is* the history that a rebuild replays from offset
zero. An existing store topic that would lose history is an error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigEntry, ConfigResource, NewTopic

from eventsource.bus.config import ClientErrors, KafkaConfig, kafka_error
from eventsource.errors import BrokerUnavailable, BusError, TopicConfigError

log = logging.getLogger(__name__)

STORE_TOPIC_CONFIG = {
    "retention.ms": "-1",
    "retention.bytes": "-1",
    "cleanup.policy": "delete",
}
_TIMEOUT = 30.0
# Errors of a broker that is not there (or not answering), not of the request.
_UNREACHABLE = {
    KafkaError._TRANSPORT,
    KafkaError._TIMED_OUT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError.REQUEST_TIMED_OUT,
}
# How long a topic listing waits for the broker (callers retry, within their
# own bounds), and how long one request of it may wait before the error
# callback is looked at.
_LISTING_TIMEOUT = 5.0
_REFUSAL_CHECK = 1.0


class TopicAdmin:
    """Creates store topics on demand and refuses unsafe existing ones."""

    def __init__(
        self, config: KafkaConfig, *, client: str = "relay", timeout: float = _TIMEOUT
    ) -> None:
        self.config = config
        self.timeout = timeout  # for each request to the broker
        self.client = client  # who uses it, for the messages of a refused login
        self._errors = ClientErrors(f"Kafka admin ({client})")
        self._admin = AdminClient(config.client(error_cb=self._errors))
        self._checked: set[str] = set()

    def list_topics(self, prefix: str = "") -> dict[str, int]:
        """Topic name -> partition count, for topics starting with `prefix`."""
        deadline = time.monotonic() + _LISTING_TIMEOUT
        while True:
            try:
                metadata = self._admin.list_topics(timeout=_REFUSAL_CHECK)
                break
            except KafkaException as exc:
                # A refused login or certificate shows in the error callback,
                # which runs inside poll: it is final; anything else may pass.
                self._admin.poll(0)
                self._errors.raise_if_refused(self.client)
                if time.monotonic() >= deadline:
                    reason = kafka_error(exc).str()
                    raise BrokerUnavailable(f"cannot list Kafka topics: {reason}") from exc
        self._errors.recovered()
        return {
            name: len(topic.partitions)
            for name, topic in metadata.topics.items()
            if name.startswith(prefix) and not name.startswith("__")
        }

    def partitions(self, topic: str) -> int:
        """The partition count of an existing topic (0 if it does not exist)."""
        return self.list_topics(topic).get(topic, 0)

    def ensure(self, topics: Iterable[str], partitions: int | None = None) -> None:
        """Create missing store topics; check the settings of existing ones."""
        wanted = [t for t in topics if t not in self._checked]
        if not wanted:
            return
        count = partitions or self.config.partitions
        futures = self._admin.create_topics(
            [
                NewTopic(t, num_partitions=count, replication_factor=-1, config=STORE_TOPIC_CONFIG)
                for t in wanted
            ],
            operation_timeout=self.timeout,
            request_timeout=self.timeout,
        )
        existing: list[str] = []
        created: list[str] = []
        for topic, future in futures.items():
            try:
                self._answer(future, f"create topic {topic!r}")
                log.info("created topic %s with %d partitions and infinite retention", topic, count)
                created.append(topic)
            except KafkaException as exc:
                if kafka_error(exc).code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise BusError(f"cannot create topic {topic!r}: {exc}") from exc
                existing.append(topic)
        self.check(existing)
        self._until_listed(created, listed=True)
        self._checked.update(wanted)

    def _answer(self, future: Future[Any], what: str) -> Any:
        """The result of an admin request; `BrokerUnavailable` if Kafka does not
        answer in time, so that callers retry it like any outage."""
        try:
            return future.result(self.timeout)
        except TimeoutError as exc:
            self._admin.poll(0)
            self._errors.raise_if_refused(self.client)
            raise BrokerUnavailable(
                f"Kafka at {self.config.bootstrap_servers} did not answer within"
                f" {self.timeout:.0f} s (to {what})"
            ) from exc
        except KafkaException as exc:
            if kafka_error(exc).code() in _UNREACHABLE:
                raise BrokerUnavailable(
                    f"cannot reach Kafka at {self.config.bootstrap_servers} (to {what}):"
                    f" {kafka_error(exc).str()}"
                ) from exc
            raise

    def _until_listed(self, topics: list[str], *, listed: bool) -> None:
        """Return once the broker's metadata lists `topics` (or, not `listed`,
        no longer lists them): the controller has created or deleted them, and
        the broker that answers learns of it a moment later."""
        deadline = time.monotonic() + self.timeout
        while True:
            present = set(topics) & set(self.list_topics())
            waiting = set(topics) - present if listed else present
            if not waiting:
                return
            if time.monotonic() > deadline:
                state = "not listed" if listed else "still listed"
                raise BusError(
                    f"topics {sorted(waiting)} {state} {self.timeout:.0f} s after"
                    f" {'creation' if listed else 'deletion'}"
                )
            time.sleep(0.05)

    def check(self, topics: Iterable[str]) -> None:
        """Raise `TopicConfigError` if a topic would drop history."""
        pending = list(topics)
        deadline = time.monotonic() + self.timeout
        while pending:
            resources = [ConfigResource(ConfigResource.Type.TOPIC, t) for t in pending]
            pending = []
            for resource, future in self._admin.describe_configs(
                resources, request_timeout=self.timeout
            ).items():
                try:
                    entries = self._answer(future, f"describe topic {resource.name!r}")
                except KafkaException as exc:
                    # A topic created a moment ago may not have reached the
                    # metadata of the broker that answers yet: ask again.
                    unknown = kafka_error(exc).code() == KafkaError.UNKNOWN_TOPIC_OR_PART
                    if unknown and time.monotonic() < deadline:
                        pending.append(resource.name)
                        continue
                    raise BusError(
                        f"cannot read the settings of topic {resource.name!r}: {exc}"
                    ) from exc
                _refuse_unsafe(resource.name, entries)
            if pending:
                time.sleep(0.1)

    def delete(self, topics: Iterable[str]) -> None:
        """Delete topics (tests and tooling only)."""
        names = list(topics)
        if not names:
            return
        for topic, future in self._admin.delete_topics(
            names, operation_timeout=self.timeout
        ).items():
            try:
                self._answer(future, f"delete topic {topic!r}")
            except KafkaException as exc:
                if kafka_error(exc).code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise BusError(f"cannot delete topic {topic!r}: {exc}") from exc
            self._checked.discard(topic)
        self._until_listed(names, listed=False)


def _refuse_unsafe(topic: str, entries: dict[str, ConfigEntry]) -> None:
    retention_ms = entries["retention.ms"].value
    retention_bytes = entries["retention.bytes"].value
    policy = entries["cleanup.policy"].value or ""
    if retention_ms != "-1":
        raise TopicConfigError(
            topic,
            f"retention.ms={retention_ms}; a store topic must keep its history forever"
            " (retention.ms=-1) or a rebuild from offset zero would miss events",
        )
    if retention_bytes not in ("-1", None):
        raise TopicConfigError(topic, f"retention.bytes={retention_bytes}; a store topic needs -1")
    if "compact" in policy:
        raise TopicConfigError(
            topic, f"cleanup.policy={policy}; compaction would drop all but each key's last event"
        )
