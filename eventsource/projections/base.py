"""`Projection` and `Reactor`: the classes users subclass to consume the log.

A projection folds events into view tables of its bounded context's own
database; a reactor reacts to events by saving aggregates of its own context.
Both name the topics they read and mark handlers with `@handles`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from sqlalchemy import Table

from eventsource.aggregates.base import snake_case
from eventsource.bus.foreign import ForeignTopic
from eventsource.errors import ConfigurationError
from eventsource.events.base import Event

E = TypeVar("E", bound=Event)
F = TypeVar("F", bound=Callable[..., None])

_HANDLES_ATTR = "__eventsource_handles__"
_NAME = re.compile(r"^[a-z][a-z0-9_.\-]{0,99}$")
_TOPIC = re.compile(r"^[a-z][a-z0-9_\-]*\.[a-z][a-z0-9_\-]*$")


def handles(*event_types: type[Event]) -> Callable[[F], F]:
    """Mark a method as the handler of `event_types` (and their subclasses)."""
    for event_type in event_types:
        if not (isinstance(event_type, type) and issubclass(event_type, Event)):
            raise ConfigurationError(f"@handles() takes Event subclasses, got {event_type!r}")
    if not event_types:
        raise ConfigurationError("@handles() needs at least one event type")

    def mark(method: F) -> F:
        setattr(method, _HANDLES_ATTR, event_types)
        return method

    return mark


def _collect(cls: type) -> dict[type[Event], Callable[..., None]]:
    found: dict[type[Event], Callable[..., None]] = {}
    for attr, value in vars(cls).items():
        event_types = getattr(value, _HANDLES_ATTR, None)
        if event_types is None:
            continue
        for event_type in event_types:
            if event_type in found:
                raise ConfigurationError(
                    f"{cls.__qualname__} has two @handles({event_type.__name__}) methods"
                    f" ({found[event_type].__name__} and {attr})"
                )
            found[event_type] = value
    return found


def _collect_deadlines(cls: type) -> dict[str, Callable[..., None]]:
    from eventsource.projections.deadlines import DEADLINE_ATTR

    found: dict[str, Callable[..., None]] = {}
    for attr, value in vars(cls).items():
        name = getattr(value, DEADLINE_ATTR, None)
        if name is None:
            continue
        if name in found:
            raise ConfigurationError(
                f"{cls.__qualname__} has two @deadline({name!r}) methods"
                f" ({found[name].__name__} and {attr})"
            )
        found[name] = value
    return found


class Consumer:
    """What projections and reactors share: a name, topics, tables and handlers.

    Class attributes:

    * `name` — identifies the consumer's positions and state (default: the
      class name in snake case). Renaming it starts over from offset zero.
    * `topics` — the topics it reads, `"<context>.<aggregate type>"`, or
      `ForeignTopic`s: topics that eventsource did not write (Kafka only).
    * `version` — raise it when tables or handlers change; the worker then
      refuses to run until `eventsource projection rebuild NAME` has rebuilt
      the view from offset zero.
    * every `sqlalchemy.Table` attribute is one of its view tables.
    * `start_at` — where it starts when it has no positions yet:
      `"beginning"` (the default: offset zero, every event in the log) or
      `"end"` (only events appended from its first start on: a new reactor
      that must not react to history). A rebuild always starts at zero.
    * `on_failure` — what happens to an event whose handler keeps failing
      after `max_retries` retries: `"stop"` (the default) parks it in the
      dead-letter table and stops the worker; `"park"` parks it, and every
      later event of the same aggregate behind it, and goes on with the others.
    """

    name: ClassVar[str] = ""
    topics: ClassVar[list[str]] = []
    version: ClassVar[int] = 1
    on_failure: ClassVar[str] = "stop"
    start_at: ClassVar[str] = "beginning"
    max_retries: ClassVar[int] = 3
    tables: ClassVar[list[Table]] = []
    _handlers: ClassVar[dict[type[Event], Callable[..., None]]] = {}
    _deadlines: ClassVar[dict[str, Callable[..., None]]] = {}
    _cache: ClassVar[dict[type[Event], Callable[..., None] | None]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("name"):
            cls.name = snake_case(cls.__name__)
        if not _NAME.match(cls.name):
            raise ConfigurationError(
                f"{cls.__qualname__}.name {cls.name!r} must be lower case letters, digits,"
                " '_', '.' or '-', starting with a letter"
            )
        if not isinstance(cls.version, int) or cls.version < 1:
            raise ConfigurationError(f"{cls.__qualname__}.version must be a positive int")
        if cls.on_failure not in ("stop", "park"):
            raise ConfigurationError(
                f"{cls.__qualname__}.on_failure must be 'stop' or 'park', got {cls.on_failure!r}"
            )
        if cls.start_at not in ("beginning", "end"):
            raise ConfigurationError(
                f"{cls.__qualname__}.start_at must be 'beginning' or 'end', got {cls.start_at!r}"
            )
        for topic in cls.topics:
            if isinstance(topic, ForeignTopic):
                continue  # a Kafka topic name, checked when it was made
            if not isinstance(topic, str) or not _TOPIC.match(topic):
                raise ConfigurationError(
                    f"{cls.__qualname__}.topics: {topic!r} is not of the form"
                    " '<context>.<aggregate type>'"
                )
        inherited = getattr(cls.__mro__[1], "tables", [])
        declared = cls.__dict__.get("tables", [])
        attributes = [v for v in vars(cls).values() if isinstance(v, Table)]
        cls.tables = list(dict.fromkeys([*inherited, *declared, *attributes]))
        own = _collect(cls)
        cls._handlers = {**cls._handlers, **own}
        cls._deadlines = {**cls._deadlines, **_collect_deadlines(cls)}
        cls._cache = {}

    @classmethod
    def handler_for(cls, event_type: type[Event]) -> Callable[..., None] | None:
        """The handler for `event_type` or its nearest base class; None if not handled."""
        try:
            return cls._cache[event_type]
        except KeyError:
            found = next((cls._handlers[t] for t in event_type.__mro__ if t in cls._handlers), None)
            cls._cache[event_type] = found
            return found

    @classmethod
    def handled_types(cls) -> list[type[Event]]:
        return list(cls._handlers)

    @classmethod
    def check(cls) -> None:
        """Raise `ConfigurationError` if the class cannot run (checked at worker start)."""
        if not cls.topics:
            raise ConfigurationError(f"{cls.__qualname__} names no topics to read")
        if not cls._handlers:
            raise ConfigurationError(
                f"{cls.__qualname__} handles no event types: mark methods with @handles(Event)"
            )
        names = [t.name for t in cls.tables]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"{cls.__qualname__} declares a table name twice: {names}")
        for table in cls.tables:
            if not table.primary_key.columns:
                raise ConfigurationError(
                    f"{cls.__qualname__}: view table {table.name!r} needs a primary key"
                    " (upserts and deletes are by key)"
                )

    def setup(self) -> None:
        """Called once in the worker before the first batch; override for set-up."""


class Projection(Consumer):
    """Folds events into view tables.

    ::

        metadata = MetaData()

        class CustomerAddresses(Projection):
            topics = ["customers.customer"]
            addresses = Table(
                "shipping_addresses", metadata,
                Column("customer_id", String, primary_key=True),
                Column("street", String),
            )

            @handles(AddressChanged)
            def _moved(self, event: AddressChanged, view: View) -> None:
                view.upsert(self.addresses, customer_id=event.aggregate_id, street=event.street)

    Handlers take the event and a `View`, which buffers upserts, updates and
    deletes in memory and writes them in bulk with the batch's positions, in
    one transaction.
    """


class Reactor(Consumer):
    """Reacts to events by saving aggregates of its own bounded context.

    ::

        class ShipPaidOrders(Reactor):
            topics = ["orders.order"]

            @handles(OrderPaid)
            def _paid(self, event: OrderPaid, reaction: Reaction) -> None:
                shipments = reaction.repository(Shipment)
                shipments.save(Shipment.create(event.aggregate_id))

    Handlers take the event and a `Reaction`: repositories whose saves, and
    the consumer positions, commit in one transaction, so each reaction
    happens exactly once. New events carry the causing event's id as their
    causation id and its correlation id.
    """
