"""Events of one aggregate, as a test gives them or expects them: `stream(...)`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import uuid4

from eventsource.aggregates.base import Aggregate, check_id
from eventsource.errors import ConfigurationError
from eventsource.events.base import Event
from eventsource.events.codec import stamp
from eventsource.events.records import stream_id_for


@dataclass(frozen=True)
class Stream:
    """Events of one aggregate, in order; built by `stream()`::

    stream(Order, "o-1", OrderPlaced(customer_id="c-1", total=Decimal("10")))
    """

    aggregate_type: str
    aggregate_id: str
    events: tuple[Event, ...]
    context: str | None = None

    @property
    def stream_id(self) -> str:
        """The store's id of the stream: `<aggregate type>:<aggregate id>`."""
        return stream_id_for(self.aggregate_type, self.aggregate_id)


def stream(
    aggregate: type[Aggregate] | str,
    aggregate_id: str,
    *events: Event,
    context: str | None = None,
) -> Stream:
    """The events of the aggregate `aggregate_id`, for a projection or reactor scenario.

    ::

        given(
            OrderSummary,
            stream(Order, "o-1", OrderPlaced(customer_id="c-1", total=Decimal("10"))),
            stream("order", "o-2", OrderPlaced(customer_id="c-2", total=Decimal("5"))),
        )

    `aggregate` is the aggregate class or its type name (a context's tests
    need only the other contexts' events, not their classes). `context`
    names the bounded context whose log carries the events; by default the
    one whose topic of that aggregate type the consumers read, else the
    scenario's own context. In `then(...)`, a stream also checks which
    aggregate recorded each event.
    """
    type_name = aggregate if isinstance(aggregate, str) else aggregate.type_name
    if not isinstance(aggregate, str) and not (
        isinstance(aggregate, type) and issubclass(aggregate, Aggregate)
    ):
        raise ConfigurationError(
            f"stream() takes an Aggregate subclass or a type name, got {aggregate!r}"
        )
    for event in events:
        if not isinstance(event, Event):
            raise ConfigurationError(f"stream() takes events, got {event!r}")
    return Stream(type_name, check_id(aggregate_id), tuple(events), context)


def recorded(
    event: Event, *, aggregate_type: str, aggregate_id: str, version: int, at: datetime
) -> Event:
    """A copy of `event` stamped as recorded at `version` of the aggregate's stream."""
    copy = event.model_copy()
    event_id = uuid4()
    stamp(
        copy,
        event_id=event_id,
        aggregate_id=aggregate_id,
        aggregate_type=aggregate_type,
        version=version,
        position=0,
        occurred_at=at,
        correlation_id=event_id,
        causation_id=None,
    )
    return copy
