"""Every error eventsource raises on purpose.

    EventSourceError
    ├── ConfigurationError (ValueError)      a setting, URL or declaration is wrong
    ├── DecodeError (ValueError)             stored bytes are not a valid event
    │   └── UnknownEventType                 no class registered under the type name
    ├── EncodeError (ValueError)             an event cannot be stored
    │   └── EventTooLarge                    above the store's size limit
    ├── MissingHandler (TypeError)           an aggregate/projection has no handler
    ├── InvalidAggregateId (ValueError)      empty, too long, not a string or not storable
    ├── AggregateNotFound (LookupError)      no events for that id
    ├── IncompatibleSchema                   event classes can no longer read a recorded shape
    ├── ConcurrencyError                     another writer saved the stream first
    ├── StoreError                           the database failed underneath us, for good
    │   └── StoreUnavailable                 ...for now (down, restarting, a deadlock): retried
    ├── BusError                             the log (Kafka or embedded) failed
    │   ├── BrokerUnavailable                Kafka cannot be reached for now: retried
    │   ├── RelayFenced                      another relay took over the same store
    │   ├── TransformFenced                  another process took over a transform's place
    │   ├── StoreMismatch                    the topics were written by another store
    │   ├── TopicConfigError                 a topic exists with unsafe settings
    │   └── KafkaAuthenticationError         login or TLS certificates refused, either way
    └── ProjectionError
        ├── StalePosition                    a newer worker owns the partition
        ├── PoisonEvent                      a handler (or a transform) kept failing on one event
        └── ProjectionVersionMismatch        code and database disagree; rebuild

Errors carry their context as attributes so that callers and logs can act on
them without parsing messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID


class EventSourceError(Exception):
    """Root of every error raised by eventsource."""


class ConfigurationError(EventSourceError, ValueError):
    """A setting, URL or class declaration is invalid."""


class DecodeError(EventSourceError, ValueError):
    """Stored or received bytes could not be turned into an event.

    Names where the bad data lives: the event type, the stream and version,
    and for messages from the log also the topic, partition and offset.
    """

    def __init__(
        self,
        reason: str,
        *,
        event_type: str | None = None,
        stream_id: str | None = None,
        version: int | None = None,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        self.reason = reason
        self.event_type = event_type
        self.stream_id = stream_id
        self.version = version
        self.topic = topic
        self.partition = partition
        self.offset = offset
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = [
            f"{name}={value!r}"
            for name, value in (
                ("type", self.event_type),
                ("stream", self.stream_id),
                ("version", self.version),
                ("topic", self.topic),
                ("partition", self.partition),
                ("offset", self.offset),
            )
            if value is not None
        ]
        return f"cannot decode event ({', '.join(where) or 'no context'}): {self.reason}"

    def at(self, *, topic: str, partition: int, offset: int) -> DecodeError:
        """The same error, also naming the log location it was read from."""
        return type(self)(
            self.reason,
            event_type=self.event_type,
            stream_id=self.stream_id,
            version=self.version,
            topic=topic,
            partition=partition,
            offset=offset,
        )


class UnknownEventType(DecodeError):
    """No event class is registered under the stored type name."""


class EncodeError(EventSourceError, ValueError):
    """An event cannot be turned into a stored record."""


class EventTooLarge(EncodeError):
    """The encoded event is bigger than the store accepts."""

    def __init__(self, *, event_type: str, stream_id: str, size: int, limit: int) -> None:
        self.event_type = event_type
        self.stream_id = stream_id
        self.size = size
        self.limit = limit
        super().__init__(
            f"event {event_type!r} for stream {stream_id!r} is {size} bytes encoded,"
            f" above the limit of {limit} bytes (max_event_bytes)"
        )


class MissingHandler(EventSourceError, TypeError):
    """An event was given to a class that has no handler for its type."""


class InvalidAggregateId(EventSourceError, ValueError):
    """An aggregate id is empty, too long, not a string, or holds NUL or a lone surrogate."""


class AggregateNotFound(EventSourceError, LookupError):
    """No aggregate of that type has events under that id."""

    def __init__(self, aggregate_type: str, aggregate_id: str) -> None:
        self.aggregate_type = aggregate_type
        self.aggregate_id = aggregate_id
        super().__init__(f"no {aggregate_type} with id {aggregate_id!r}")


class IncompatibleSchema(EventSourceError):
    """The current event classes cannot read every shape that is recorded: in the
    schema lock file, or in a database's stored events.

    `problems` holds one line per problem; `source` names what was checked.
    """

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        first = self.problems[0] if self.problems else "no details"
        super().__init__(f"{source}: {first}{more}")


class ConcurrencyError(EventSourceError):
    """Another writer appended to the stream since it was read.

    Nothing of the failed save was recorded; reload the aggregate and retry
    the command.
    """

    def __init__(self, stream_id: str, expected_version: int, actual_version: int | None) -> None:
        self.stream_id = stream_id
        self.expected_version = expected_version
        self.actual_version = actual_version
        actual = "unknown" if actual_version is None else str(actual_version)
        super().__init__(
            f"stream {stream_id!r} was expected at version {expected_version}"
            f" but is at version {actual}: another writer saved first"
        )


class StoreError(EventSourceError):
    """The database underneath the event store failed in a way that retrying
    will not fix: a refused login, a missing database or table, bad SQL."""


class StoreUnavailable(StoreError):
    """The database cannot serve us right now: it is down or restarting, the
    connection was lost, it has too many connections, or it chose this
    transaction as a deadlock's victim. Retrying later succeeds."""


class BusError(EventSourceError):
    """The log (Kafka or the embedded SQL log) failed."""


class BrokerUnavailable(BusError):
    """Kafka cannot be reached right now; retrying later succeeds."""


class RelayFenced(BusError):
    """A newer relay with the same transactional id took over; this one must stop."""


class TransformFenced(BusError):
    """Another process with the same transactional id (or group member name)
    runs the transform now; this one must stop, its open transaction aborted."""


class StoreMismatch(BusError):
    """The context's topics on Kafka were written by another store, or hold
    more than this store has: the relay refuses before it fences anything.

    `found` are the store ids on the topics' last messages, `kafka_position`
    the highest position they hold, `head` this store's.
    """

    def __init__(
        self, reason: str, *, store_id: str, found: set[str], kafka_position: int, head: int
    ) -> None:
        self.store_id = store_id
        self.found = found
        self.kafka_position = kafka_position
        self.head = head
        super().__init__(reason)


class KafkaAuthenticationError(BusError):
    """The broker refused the client's login or TLS certificate, or the client does not
    trust the broker's certificate: retrying will not help."""


class TopicConfigError(BusError):
    """A topic exists with settings that would lose history."""

    def __init__(self, topic: str, reason: str) -> None:
        self.topic = topic
        super().__init__(f"topic {topic!r}: {reason}")


class ProjectionError(EventSourceError):
    """A projection or reactor could not make progress."""


class StalePosition(ProjectionError):
    """The stored position moved under us: another worker owns the partition now."""

    def __init__(self, projection: str, topic: str, partition: int, expected: int) -> None:
        self.projection = projection
        self.topic = topic
        self.partition = partition
        self.expected = expected
        super().__init__(
            f"projection {projection!r} expected {topic}[{partition}] at offset {expected},"
            " but another worker has moved it; this batch was discarded"
        )


class PoisonEvent(ProjectionError):
    """A handler failed on one event more times than it is allowed to retry."""

    def __init__(
        self,
        projection: str,
        *,
        topic: str,
        partition: int,
        offset: int,
        event_type: str | None,
        event_id: UUID | None,
        error: BaseException,
        kind: str = "projection",
    ) -> None:
        self.projection = projection
        self.kind = kind
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.event_type = event_type
        self.event_id = event_id
        self.error = error
        super().__init__(
            f"{kind} {projection!r} failed on {event_type or 'undecodable message'}"
            f" at {topic}[{partition}]@{offset}: {type(error).__name__}: {error}"
        )


class ProjectionVersionMismatch(ProjectionError):
    """The database holds a different version of the projection than the code."""

    def __init__(self, projection: str, stored: int, declared: int) -> None:
        self.projection = projection
        self.stored = stored
        self.declared = declared
        super().__init__(
            f"projection {projection!r} is at version {stored} in the database but the code"
            f" declares version {declared}; ship it with"
            f" `eventsource projection rebuild {projection}`"
        )
