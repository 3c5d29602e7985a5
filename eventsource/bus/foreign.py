"""Topics that eventsource did not write: plain JSON records from other systems.

A Kafka Connect source, a CDC tool or a service of another stack writes
JSON values, keyed or not, without eventsource's headers. A `ForeignTopic`
says how to read one as events, so that projections, reactors and
transforms consume it like any other topic::

    class Contact(Event):
        event_type = "crm.contact"
        name: str
        email: str

    class Contacts(Projection):
        topics = [ForeignTopic("crm.contacts", Contact, key="id", time="updated_at")]

Each record becomes one event of the topic's model:

* its value is a JSON object (or the Connect JSON envelope, whose
  `payload` is then the object), validated into the model; fields the model
  does not declare are ignored, and keys named like event metadata
  (`event_id`, `version`, ...) never reach it;
* its aggregate id is the value's `key` field if one is named, else the
  message key as text, else empty; its aggregate type is the topic;
* its time (`occurred_at`) is the value's `time` field if one is named (ISO
  8601 text, taken as UTC without a zone, or milliseconds since the epoch),
  else the Kafka timestamp;
* its event id is derived from topic, partition and offset (the same record
  always has the same id); it has no correlation or causation id, no
  version and no global position.

A record that is not JSON, not an object, lacks the named fields, or does
not validate is a poison event like any other: dead-lettered, or the worker
stops, as the consumer's `on_failure` says. A tombstone (no value, which
compacted topics and Debezium write after a delete) is skipped.

Foreign records carry no global position, so the duplicate filter that
drops a message seen twice by position cannot apply to them: exactly once
rests on the consumer's own positions (offsets committed with its view, or
in its Kafka transaction), and `wait_for`, which waits for a store's
positions, does not wait for them.
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from eventsource.errors import ConfigurationError, DecodeError
from eventsource.events.base import METADATA_FIELDS, Event
from eventsource.events.records import StoredEvent, stream_id_for

log = logging.getLogger(__name__)

# Event ids of foreign records: uuid5 of "<topic>/<partition>/<offset>" in this namespace.
FOREIGN_NAMESPACE = uuid.UUID("6f1c1f3e-5d0a-4c53-9b57-0d3c7f4a2e10")
_KAFKA_TOPIC = re.compile(r"^[A-Za-z0-9._\-]{1,200}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ForeignTopic(str):
    """A topic written by someone else, and how to read its records as events.

    It *is* the topic's name (a `str`), so it goes wherever a topic name
    goes (`Projection.topics`, `stream()`); what it adds travels with it.
    `model` is the `Event` subclass each record is validated into; `key`
    names the value field that holds the aggregate id (default: the message
    key); `time` names the field that holds the event's time (default: the
    Kafka timestamp); `envelope` says whether values are wrapped in the
    Connect JSON envelope (`{"schema": ..., "payload": ...}`): True, False,
    or None (the default) to unwrap values shaped like one.
    """

    model: type[Event]
    key: str | None
    time: str | None
    envelope: bool | None

    def __new__(
        cls,
        name: str,
        model: type[Event],
        *,
        key: str | None = None,
        time: str | None = None,
        envelope: bool | None = None,
    ) -> ForeignTopic:
        if not isinstance(name, str) or not _KAFKA_TOPIC.match(name) or name in (".", ".."):
            raise ConfigurationError(
                f"foreign topic {name!r} is not a Kafka topic name (letters, digits, '.', '_', '-')"
            )
        if not (isinstance(model, type) and issubclass(model, Event)):
            raise ConfigurationError(
                f"foreign topic {name!r}: the model must be an Event subclass, got {model!r}"
            )
        made = super().__new__(cls, name)
        made.model = model
        made.key = key
        made.time = time
        made.envelope = envelope
        return made

    def __repr__(self) -> str:
        return f"ForeignTopic({str(self)!r}, {self.model.__qualname__})"

    def __reduce__(self) -> Any:
        return (_rebuild, (str(self), self.model, self.key, self.time, self.envelope))

    def record(  # noqa: PLR0917 - the fields of one Kafka message
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int | None,
    ) -> StoredEvent | None:
        """The stored form of one message (None for a tombstone); `DecodeError`
        naming topic, partition and offset if it cannot be read."""
        if value is None:
            return None
        try:
            data = self._fields(value)
            aggregate_id = self._aggregate_id(data, key)
            occurred_at = self._occurred_at(data, timestamp_ms)
        except ValueError as exc:
            raise DecodeError(
                f"foreign record: {exc}",
                event_type=self.model.event_type,
                topic=topic,
                partition=partition,
                offset=offset,
            ) from exc
        payload = {k: v for k, v in data.items() if k not in METADATA_FIELDS}
        return StoredEvent(
            position=0,
            # Unkeyed records keep their order per partition only: each
            # partition is one stream (a parked record holds back its partition).
            stream_id=stream_id_for(topic, aggregate_id or f"@{partition}"),
            aggregate_id=aggregate_id,
            aggregate_type=topic,
            version=0,
            event_type=self.model.event_type,
            schema_version=self.model.schema_version,
            event_id=uuid.uuid5(FOREIGN_NAMESPACE, f"{topic}/{partition}/{offset}"),
            occurred_at=occurred_at,
            payload=orjson.dumps(payload).decode(),
            metadata="{}",
        )

    def _fields(self, value: bytes) -> dict[str, Any]:
        try:
            data = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"the value is not JSON ({exc})") from None
        if self.envelope is not False and _is_envelope(data):
            data = data["payload"]
        elif self.envelope:
            raise ValueError("the value is not a Connect JSON envelope (schema and payload)")
        if not isinstance(data, dict):
            raise ValueError(f"the value is a JSON {type(data).__name__}, not an object")
        return data

    def _aggregate_id(self, data: dict[str, Any], key: bytes | None) -> str:
        if self.key is not None:
            found = data.get(self.key)
            if found is None or isinstance(found, dict | list):
                raise ValueError(f"the value has no key field {self.key!r} (a string or number)")
            return str(found)
        if key is None:
            return ""
        try:
            return key.decode()
        except UnicodeDecodeError:
            raise ValueError("the message key is not UTF-8 text") from None

    def _occurred_at(self, data: dict[str, Any], timestamp_ms: int | None) -> datetime:
        if self.time is None:
            if timestamp_ms is None or timestamp_ms < 0:
                raise ValueError("the message has no timestamp")
            return _EPOCH + timedelta(milliseconds=timestamp_ms)
        found = data.get(self.time)
        if isinstance(found, bool) or found is None:
            raise ValueError(f"the value has no time field {self.time!r}")
        if isinstance(found, int | float):
            try:
                return _EPOCH + timedelta(milliseconds=found)
            except (OverflowError, ValueError):
                raise ValueError(f"time field {self.time!r} is out of range: {found}") from None
        if not isinstance(found, str):
            raise ValueError(f"time field {self.time!r} is neither ISO 8601 text nor a number")
        try:
            moment = datetime.fromisoformat(found)
        except ValueError:
            raise ValueError(f"time field {self.time!r} is not ISO 8601: {found[:40]!r}") from None
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _rebuild(
    name: str, model: type[Event], key: str | None, time: str | None, envelope: bool | None
) -> ForeignTopic:
    return ForeignTopic(name, model, key=key, time=time, envelope=envelope)


def _is_envelope(data: Any) -> bool:
    """Whether `data` is what Connect's JsonConverter writes with schemas enabled."""
    return (
        isinstance(data, dict)
        and data.keys() == {"schema", "payload"}
        and isinstance(data["schema"], dict | None)
    )


def foreign_topics(topics: Any) -> dict[str, ForeignTopic]:
    """The foreign ones among `topics`, by name."""
    return {str(t): t for t in topics if isinstance(t, ForeignTopic)}
