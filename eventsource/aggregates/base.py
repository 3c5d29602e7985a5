"""The `Aggregate` base class and the `on` decorator for its event handlers."""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from eventsource.errors import ConfigurationError, InvalidAggregateId, MissingHandler
from eventsource.events.base import Event
from eventsource.events.codec import stamp
from eventsource.events.uuids import uuid7

E = TypeVar("E", bound=Event)
Handler = Callable[[Any, Any], None]

MAX_ID_LENGTH = 200
_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_\-]{0,99}$")
_HANDLES_ATTR = "__eventsource_on__"
_IMMUTABLE = (str, int, float, bool, bytes, type(None), tuple, frozenset, UUID, datetime)

# The event being reacted to, if any: new events take their causation and
# correlation ids from it (see `caused_by`).
_cause: ContextVar[tuple[UUID, UUID] | None] = ContextVar("eventsource_cause", default=None)


def on(*event_types: type[Event]) -> Callable[[Callable[[Any, E], None]], Callable[[Any, E], None]]:
    """Mark an aggregate method as the handler that applies `event_types` to its state."""
    for event_type in event_types:
        if not (isinstance(event_type, type) and issubclass(event_type, Event)):
            raise ConfigurationError(f"@on() takes Event subclasses, got {event_type!r}")
    if not event_types:
        raise ConfigurationError("@on() needs at least one event type")

    def mark(method: Callable[[Any, E], None]) -> Callable[[Any, E], None]:
        setattr(method, _HANDLES_ATTR, event_types)
        return method

    return mark


@contextmanager
def caused_by(event: Event) -> Iterator[None]:
    """Within the block, triggered events record `event` as their cause.

    Their `causation_id` is `event.event_id` and their `correlation_id` is
    carried over from `event` (reactors do this for every handler call).
    """
    with caused_by_ids(event.event_id, event.correlation_id or event.event_id):
        yield


@contextmanager
def caused_by_ids(causation_id: UUID, correlation_id: UUID) -> Iterator[None]:
    """Like `caused_by`, from the ids alone (a deadline remembers only those)."""
    token = _cause.set((causation_id, correlation_id))
    try:
        yield
    finally:
        _cause.reset(token)


def snake_case(name: str) -> str:
    """`OrderLine` -> `order_line`, `HTTPRequest` -> `http_request`."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


class Aggregate:
    """A consistency boundary whose state is only ever changed by its events.

    Subclass it, declare the state as annotated attributes with defaults, and
    apply events in `@on(EventType)` methods::

        class Order(Aggregate):
            status: str = "new"

            def pay(self) -> None:
                self.trigger(OrderPaid())

            @on(OrderPaid)
            def _paid(self, event: OrderPaid) -> None:
                self.status = "paid"

    Class keywords: `type_name` (default: the class name in snake case, which
    also names the Kafka topic `<context>.<type_name>`), `snapshot_every`
    (store a snapshot every N events; default none) and `snapshot_version`
    (raise it when handlers change what state they build from the same
    events, so that old snapshots are ignored).
    """

    type_name: ClassVar[str] = "aggregate"
    snapshot_every: ClassVar[int | None] = None
    snapshot_version: ClassVar[int] = 1
    _handlers: ClassVar[dict[type[Event], Handler]] = {}
    _handler_cache: ClassVar[dict[type[Event], Handler | None]] = {}

    _es_id: str
    _es_version: int
    _es_pending: list[Event]

    def __init_subclass__(
        cls,
        *,
        type_name: str | None = None,
        snapshot_every: int | None = None,
        snapshot_version: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if type_name is not None:
            cls.type_name = type_name
        elif "type_name" not in cls.__dict__:
            cls.type_name = snake_case(cls.__name__)
        if not _TYPE_NAME.match(cls.type_name):
            raise ConfigurationError(
                f"{cls.__qualname__}: aggregate type name {cls.type_name!r} must be lower case"
                " letters, digits, '_' or '-', starting with a letter (it names a topic)"
            )
        if snapshot_every is not None:
            cls.snapshot_every = snapshot_every
        if cls.snapshot_every is not None and (
            not isinstance(cls.snapshot_every, int) or cls.snapshot_every < 1
        ):
            raise ConfigurationError(
                f"{cls.__qualname__}.snapshot_every must be a positive int or None,"
                f" got {cls.snapshot_every!r}"
            )
        if snapshot_version is not None:
            cls.snapshot_version = snapshot_version
        cls._handlers = {**cls._handlers, **_collect_handlers(cls)}
        cls._handler_cache = {}

    def __init__(self, id: str) -> None:
        self._es_id = check_id(id)
        self._es_version = 0
        self._es_pending = []
        self._set_defaults()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self._es_id!r} version={self._es_version}>"

    @property
    def id(self) -> str:
        """The aggregate's id, unique among aggregates of its type in one store."""
        return self._es_id

    @property
    def version(self) -> int:
        """How many events this aggregate has, including pending ones."""
        return self._es_version

    @property
    def pending_events(self) -> tuple[Event, ...]:
        """Events triggered since the aggregate was loaded or last saved."""
        return tuple(self._es_pending)

    def trigger(self, event: Event) -> None:
        """Apply `event` through its `@on` handler and queue it for saving.

        The event is stamped with this aggregate's id, type and next version,
        a fresh time-ordered event id (UUID version 7), the current UTC time, and the causation and
        correlation ids of the event being reacted to (if any).
        """
        handler = self._handler_for(type(event))
        event_id = uuid7()  # time-ordered: cheap to index (see `uuid7`)
        cause = _cause.get()
        recorded = event.model_copy()
        stamp(
            recorded,
            event_id=event_id,
            aggregate_id=self._es_id,
            aggregate_type=self.type_name,
            version=self._es_version + 1,
            position=0,
            occurred_at=datetime.now(UTC),
            correlation_id=cause[1] if cause else event_id,
            causation_id=cause[0] if cause else None,
        )
        handler(self, recorded)
        self._es_version += 1
        self._es_pending.append(recorded)

    # -- framework internals -------------------------------------------------

    @classmethod
    def _handler_for(cls, event_type: type[Event]) -> Handler:
        try:
            handler = cls._handler_cache[event_type]
        except KeyError:
            handler = next(
                (cls._handlers[t] for t in event_type.__mro__ if t in cls._handlers), None
            )
            cls._handler_cache[event_type] = handler
        if handler is None:
            raise MissingHandler(
                f"{cls.__qualname__} has no @on({event_type.__name__}) handler;"
                " every event an aggregate triggers or loads must be applied by one"
            )
        return handler

    @classmethod
    def _blank(cls, id: str) -> Any:
        """An instance with default state and no events, without calling `__init__`."""
        self = cls.__new__(cls)
        Aggregate.__init__(self, id)
        return self

    def _apply_history(self, events: Iterable[Event]) -> None:
        """Replay stored events through the same handlers `trigger` uses."""
        for event in events:
            self._handler_for(type(event))(self, event)
            self._es_version = event.version

    def _mark_saved(self) -> list[Event]:
        pending, self._es_pending = self._es_pending, []
        return pending

    def _set_defaults(self) -> None:
        for name, value in state_defaults(type(self)).items():
            setattr(self, name, value if isinstance(value, _IMMUTABLE) else copy.deepcopy(value))


def check_id(value: object) -> str:
    """`value` if it is a usable aggregate id, else `InvalidAggregateId`."""
    if not isinstance(value, str):
        raise InvalidAggregateId(f"an aggregate id must be a str, got {type(value).__name__}")
    if not value or not value.strip():
        raise InvalidAggregateId("an aggregate id must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidAggregateId(
            f"an aggregate id must be at most {MAX_ID_LENGTH} characters, got {len(value)}"
        )
    # Every database must be able to store it: PostgreSQL text holds no NUL,
    # and neither driver can encode a lone surrogate.
    if "\x00" in value or not _encodable(value):
        raise InvalidAggregateId(
            f"an aggregate id must be valid UTF-8 text without NUL characters, got {value!r}"
        )
    return value


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def state_defaults(cls: type[Aggregate]) -> dict[str, Any]:
    """Class-level defaults of the annotated state attributes, base classes first."""
    defaults: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass is Aggregate or not issubclass(klass, Aggregate):
            continue
        for name, annotation in inspect.get_annotations(klass).items():
            if name.startswith("_") or "ClassVar" in str(annotation):
                continue
            if name in klass.__dict__ and not callable(klass.__dict__[name]):
                defaults[name] = klass.__dict__[name]
    return defaults


def _collect_handlers(cls: type) -> dict[type[Event], Handler]:
    found: dict[type[Event], Handler] = {}
    for attr, value in cls.__dict__.items():
        event_types = getattr(value, _HANDLES_ATTR, None)
        if event_types is None:
            continue
        for event_type in event_types:
            if event_type in found:
                raise ConfigurationError(
                    f"{cls.__qualname__} has two @on({event_type.__name__}) handlers"
                    f" ({found[event_type].__name__} and {attr})"
                )
            found[event_type] = value
    return found
