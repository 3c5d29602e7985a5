"""Aggregates: given past events, when a command runs, then these new events (or this error)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from eventsource.aggregates.base import Aggregate, check_id
from eventsource.errors import ConfigurationError
from eventsource.events.base import Event
from eventsource.events.codec import EventCodec
from eventsource.testing.clock import FakeClock
from eventsource.testing.compare import (
    compare_lists,
    describe_event,
    event_differences,
    field_differences,
    own_fields,
)
from eventsource.testing.streams import recorded

A = TypeVar("A", bound=Aggregate)


class AggregateScenario(Generic[A]):
    """An aggregate rebuilt from past events, ready for a command.

    Made by `given(Order, *events, id="o-1")`::

        given(Order, OrderPlaced(customer_id="c-1", total=Decimal("10")), id="o-1").when(
            lambda order: order.pay()
        ).then(OrderPaid(customer_id="c-1", total=Decimal("10")))

    The past events go through the store's codec (encoded, then decoded, as
    `Repository.get` would load them) and the aggregate's `@on` handlers.
    """

    def __init__(
        self,
        aggregate: type[A],
        events: Sequence[Event] = (),
        *,
        id: str | None = None,
        clock: FakeClock | None = None,
        codec: EventCodec | None = None,
    ) -> None:
        if not (isinstance(aggregate, type) and issubclass(aggregate, Aggregate)):
            raise ConfigurationError(f"given() takes an Aggregate subclass, got {aggregate!r}")
        self.aggregate_class = aggregate
        self.id = check_id(id if id is not None else f"{aggregate.type_name}-1")
        self.clock = clock or FakeClock()
        self.codec = codec or EventCodec()
        self.history: tuple[Event, ...] = tuple(self._stored(events))

    def _stored(self, events: Sequence[Event]) -> list[Event]:
        out: list[Event] = []
        for version, event in enumerate(events, start=1):
            if not isinstance(event, Event):
                raise ConfigurationError(f"given() takes events after the aggregate, got {event!r}")
            stamped = recorded(
                event,
                aggregate_type=self.aggregate_class.type_name,
                aggregate_id=self.id,
                version=version,
                at=self.clock.now(),
            )
            out.append(self.codec.decode(self.codec.encode(stamped)))
        return out

    def aggregate(self) -> A:
        """A fresh aggregate rebuilt from the past events (as `Repository.get` builds it)."""
        aggregate: A = self.aggregate_class._blank(self.id)
        aggregate._apply_history(self.history)
        return aggregate

    def when(self, command: Callable[[A], object]) -> AggregateOutcome[A]:
        """Run `command` on the aggregate; what it records, or raises, is the outcome.

        `command` takes the aggregate (with no past events: a new one with
        the scenario's id). If it returns an aggregate, that one's new events
        are the outcome, which suits factory methods:
        `given(Order).when(lambda _: Order.place("o-1", "c-1", Decimal("10")))`.
        """
        aggregate = self.aggregate()
        try:
            result = command(aggregate)
        except Exception as exc:
            return AggregateOutcome(aggregate, self.codec, error=exc)
        if isinstance(result, Aggregate):
            aggregate = result  # type: ignore[assignment]
        return AggregateOutcome(aggregate, self.codec)


class AggregateOutcome(Generic[A]):
    """What a command did: the events it recorded, or the error it raised.

    ::

        outcome = given(Order, placed, id="o-1").when(lambda order: order.cancel("late"))
        outcome.then(OrderCancelled(reason="late"))     # or outcome.then_raises(OrderError)
        assert outcome.events[0].aggregate_id == "o-1"  # recorded, with metadata
    """

    def __init__(self, aggregate: A, codec: EventCodec, *, error: Exception | None = None) -> None:
        self.aggregate = aggregate
        self.codec = codec
        self.error = error

    @property
    def events(self) -> tuple[Event, ...]:
        """The new events, as the aggregate recorded them (with their metadata)."""
        return self.aggregate.pending_events

    def then(self, *expected: Event) -> A:
        """Assert that the command recorded exactly `expected`, in order; return the aggregate.

        Events are compared by type and own fields, never metadata. Each new
        event must also survive storing: encoded and decoded back it must
        equal what was recorded. With no arguments: the command recorded
        nothing.
        """
        __tracebackhide__ = True
        if self.error is not None:
            raise AssertionError(
                f"expected {_count(len(expected), 'new event')}, but the command raised"
                f" {type(self.error).__name__}: {self.error}"
            ) from self.error
        new = self.events
        message = compare_lists(
            "new events",
            expected,
            new,
            differences=event_differences,
            label=lambda event: type(event).__name__,
            describe_expected=describe_event,
            describe_actual=describe_event,
            actual_name="recorded",
        )
        if message is not None:
            raise AssertionError(message)
        for event in new:
            self._check_storable(event)
        return self.aggregate

    def then_raises(
        self, error: type[BaseException] | tuple[type[BaseException], ...], match: str | None = None
    ) -> BaseException:
        """Assert that the command raised `error` (whose text matches the regular
        expression `match`, if given); return the exception."""
        __tracebackhide__ = True
        name = (
            error.__name__
            if isinstance(error, type)
            else " or ".join(kind.__name__ for kind in error)
        )
        if self.error is None:
            recorded = ", ".join(describe_event(e) for e in self.events) or "nothing"
            raise AssertionError(
                f"expected {name}, but the command succeeded and recorded {recorded}"
            )
        if not isinstance(self.error, error):
            raise AssertionError(
                f"expected {name}, but the command raised {type(self.error).__name__}: {self.error}"
            ) from self.error
        if match is not None and not re.search(match, str(self.error)):
            raise AssertionError(
                f"{type(self.error).__name__} was raised, but its text {str(self.error)!r}"
                f" does not match {match!r}"
            ) from self.error
        return self.error

    def _check_storable(self, event: Event) -> None:
        __tracebackhide__ = True
        loaded = self.codec.decode(self.codec.encode(event))
        changed = field_differences(
            own_fields(event), own_fields(loaded), words=("recorded", "loaded back")
        )
        if changed:
            raise AssertionError(
                f"{type(event).__name__} does not survive storing: " + "; ".join(changed)
            )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
