"""`given(...)`: the one entry to every scenario, by what it is given."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar, overload

from eventsource.aggregates.base import Aggregate
from eventsource.errors import ConfigurationError
from eventsource.events.base import Event
from eventsource.events.codec import EventCodec
from eventsource.projections.base import Consumer
from eventsource.store.eventstore import EventStore
from eventsource.testing.aggregates import AggregateScenario
from eventsource.testing.clock import FakeClock
from eventsource.testing.consumers import ConsumerScenario
from eventsource.testing.streams import Stream

A = TypeVar("A", bound=Aggregate)


@overload
def given(
    subject: type[A],
    *events: Event,
    id: str | None = None,
    clock: FakeClock | None = None,
    codec: EventCodec | None = None,
) -> AggregateScenario[A]: ...


@overload
def given(
    subject: type[Consumer],
    *streams: Stream,
    alongside: Sequence[type[Consumer]] = (),
    context: str | None = None,
    store: EventStore | None = None,
    clock: FakeClock | None = None,
) -> ConsumerScenario: ...


def given(subject: type[Any], *past: Any, **options: Any) -> Any:
    """Start a scenario: an aggregate's past events, or the events a projection or
    reactor reads.

    An aggregate, then a command and the new events (or error) it should give::

        given(Order, OrderPlaced(customer_id="c-1", total=Decimal("10")), id="o-1").when(
            lambda order: order.pay()
        ).then(OrderPaid(customer_id="c-1", total=Decimal("10")))

    A projection or reactor, given streams of events, run at once by real
    workers; then the view's rows, new events and pending deadlines::

        given(OrderSummary, stream(Order, "o-1", OrderPlaced(...))).then_rows(
            OrderSummary.orders, [{"order_id": "o-1", "status": "placed"}]
        )

    See `AggregateScenario` and `ConsumerScenario` for the options.
    """
    if isinstance(subject, type) and issubclass(subject, Aggregate):
        return AggregateScenario(subject, past, **options)
    if isinstance(subject, type) and issubclass(subject, Consumer):
        return ConsumerScenario(subject, past, **options)
    raise ConfigurationError(
        f"given() takes an Aggregate, Projection or Reactor class, got {subject!r}"
    )
