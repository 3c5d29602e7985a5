"""Projections and reactors: given events, then these rows, new events and deadlines.

A scenario is one bounded context's worker process in miniature: its
consumers run in real `Worker`s over the embedded log (event stores made
from the events the test gives), write to the context's own database (a
temporary SQLite file unless the test passes a store), and are run, one after
the other, until none of them has anything left to apply. What is tested is
the code that runs in production: decoding, handlers, the view's batching,
positions, a reactor's transaction and its deadlines.
"""

from __future__ import annotations

import logging
import tempfile
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any
from uuid import UUID

from sqlalchemy import Engine, Table, select

from eventsource.bus.sqllog import SqlLogConsumer, split_topic
from eventsource.errors import ConfigurationError
from eventsource.events.base import Event
from eventsource.projections import deadlines
from eventsource.projections.base import Consumer, Reactor
from eventsource.projections.deadlines import Deadline
from eventsource.projections.worker import Worker
from eventsource.store.engine import read_transaction
from eventsource.store.eventstore import EventStore
from eventsource.testing.clock import FakeClock
from eventsource.testing.compare import (
    compare_lists,
    describe_event,
    event_differences,
    field_differences,
)
from eventsource.testing.streams import Stream, recorded

log = logging.getLogger(__name__)

DEFAULT_CONTEXT = "test"
# Rounds of "run every consumer to the end of its log" before a scenario
# decides that its consumers feed each other for ever.
MAX_ROUNDS = 100


@dataclass(frozen=True)
class Scheduled:
    """A deadline a test expects a reactor to have scheduled.

    ::

        scenario.then_scheduled(Scheduled("cancel-unpaid-order", "o-1", due_at=placed + timeout))

    `payload` is compared only when given.
    """

    name: str
    key: str
    due_at: datetime
    payload: Mapping[str, Any] | None = None


class ConsumerScenario:
    """Projections and reactors of one bounded context, run over given events.

    Made by `given(OrderSummary, stream(Order, "o-1", OrderPlaced(...)), ...)`,
    which appends the events and runs the consumers at once::

        scenario = given(
            CancelUnpaidOrders,
            stream(Order, "o-1", OrderPlaced(customer_id="c-1", total=Decimal("10"))),
            context="orders",
        )
        scenario.then_scheduled(Scheduled(DEADLINE, "o-1", due_at=scenario.clock.now() + timeout))
        scenario.advance(minutes=15).then(stream(Order, "o-1", OrderCancelled(reason=...)))

    `alongside` names more consumers of the same context (a projection a
    reactor queries, say); each round runs them first, in order, then the
    subject. `context` is the bounded context whose database the consumers
    write and whose aggregates a reactor saves (required with a reactor);
    `store` is that context's store, when the test provides one (a
    PostgreSQL database, say; the scenario does not close it). Events of
    other contexts travel in stores of their own, temporary SQLite files
    that the embedded log reads; `close()` (or the scenario's garbage
    collection) removes them.
    """

    def __init__(
        self,
        subject: type[Consumer],
        streams: Sequence[Stream] = (),
        *,
        alongside: Sequence[type[Consumer]] = (),
        context: str | None = None,
        store: EventStore | None = None,
        clock: FakeClock | None = None,
    ) -> None:
        classes = [*alongside, subject]
        for cls in classes:
            if not (isinstance(cls, type) and issubclass(cls, Consumer)):
                raise ConfigurationError(
                    f"given() takes Projection or Reactor classes, got {cls!r}"
                )
        self.clock = clock or FakeClock()
        self.context = _own_context(subject, classes, context, store)
        self.stores: dict[str, EventStore] = {}
        self._owned: list[EventStore] = []
        self._folder = tempfile.TemporaryDirectory(prefix="eventsource-scenario-")
        # Whatever happens below, the databases made here are closed and
        # removed once the scenario is gone: tests rarely close what they did
        # not open.
        self._finalizer = weakref.finalize(self, _close_all, self._owned, self._folder)
        self.store = store if store is not None else self._new_store(self.context, full=True)
        self.stores[self.context] = self.store
        self._topics = [split_topic(t) for cls in classes for t in cls.topics]
        for topic_context, _ in self._topics:
            self._store_of(topic_context)
        self.workers = [self._worker(cls) for cls in classes]
        self._mark = 0
        self._given: set[UUID] = set()
        # Started before the given events happen, as a deployed worker runs
        # before what it reads: one that starts at the end of the log
        # (`start_at = "end"`) sees them too.
        self.run()
        self.when(*streams)

    # -- life ------------------------------------------------------------------

    def close(self) -> None:
        """Close the workers, and the stores the scenario made."""
        for worker in self.workers:
            worker.close()
        self._finalizer()

    def __enter__(self) -> ConsumerScenario:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def engine(self) -> Engine:
        """The context's own database: its views, positions, deadlines (and events)."""
        return self.store.engine

    # -- steps -----------------------------------------------------------------

    def when(self, *streams: Stream) -> ConsumerScenario:
        """More events happen (at the clock's time); the consumers run until done."""
        self._begin_step()
        for given in streams:
            if not isinstance(given, Stream):
                raise ConfigurationError(
                    f"give a consumer events as stream(Aggregate, id, *events), got {given!r}"
                )
            self._append(given)
        self.run()
        return self

    def advance(
        self,
        delta: timedelta | None = None,
        *,
        days: float = 0,
        hours: float = 0,
        minutes: float = 0,
        seconds: float = 0,
    ) -> ConsumerScenario:
        """Move the clock; fire the reactors' deadlines due by then; run until done."""
        self._begin_step()
        self.clock.advance(delta, days=days, hours=hours, minutes=minutes, seconds=seconds)
        reactors = [w for w in self.workers if isinstance(w.consumer, Reactor)]
        for _ in range(MAX_ROUNDS):
            fired = sum(worker.fire_deadlines(self.clock.now()) for worker in reactors)
            self.run()
            if not fired:
                return self
        raise RuntimeError(f"deadlines still fall due after {MAX_ROUNDS} rounds")

    def run(self) -> int:
        """Run every consumer to the end of its log, again until none applies
        anything; return how many messages were applied."""
        total = 0
        for _ in range(MAX_ROUNDS):
            applied = sum(worker.run(until_caught_up=True) for worker in self.workers)
            if not applied:
                return total
            total += applied
        names = ", ".join(w.name for w in self.workers)
        raise RuntimeError(
            f"{names} still apply events after {MAX_ROUNDS} rounds: does a reactor react"
            " to its own events for ever?"
        )

    # -- what happened ---------------------------------------------------------

    def new_events(self) -> list[Event]:
        """Events the consumers recorded in the latest step (`given`, `when` or `advance`)."""
        out: list[Event] = []
        after = self._mark
        while True:
            batch = self.store.read_events(after, 1000)
            if not batch:
                return out
            out.extend(e for e in batch if e.event_id not in self._given)
            after = batch[-1].position

    def rows(self, table: Table) -> list[dict[str, Any]]:
        """Every row of a view table, in primary key order."""
        key = list(table.primary_key.columns) or list(table.columns)
        with read_transaction(self.engine) as conn:
            return [dict(r) for r in conn.execute(select(table).order_by(*key)).mappings()]

    def scheduled(self) -> list[Deadline]:
        """The reactors' pending deadlines, earliest first."""
        owners = [w.key for w in self.workers if isinstance(w.consumer, Reactor)]
        with read_transaction(self.engine) as conn:
            found = [d for owner in owners for d in deadlines.pending(conn, owner)]
        return sorted(found, key=lambda d: (d.due_at, d.owner, d.name, d.key))

    # -- assertions --------------------------------------------------------------

    def then(self, *expected: Event | Stream) -> ConsumerScenario:
        """Assert that the latest step recorded exactly `expected`, in order.

        Events are compared by type and own fields; those given inside a
        `stream(...)` must also have been recorded by that aggregate. With no
        arguments: nothing was recorded.
        """
        __tracebackhide__ = True
        wanted: list[_Expected] = []
        for item in expected:
            if isinstance(item, Stream):
                wanted += [_Expected(e, item) for e in item.events]
            else:
                wanted.append(_Expected(item, None))
        message = compare_lists(
            "new events",
            wanted,
            self.new_events(),
            differences=_Expected.differences,
            label=_Expected.label,
            describe_expected=_Expected.describe,
            describe_actual=_describe_recorded,
            actual_name="recorded",
        )
        if message is not None:
            raise AssertionError(message)
        return self

    def then_rows(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> ConsumerScenario:
        """Assert that `table` holds exactly these rows.

        Rows are matched in primary key order (the expected ones are sorted
        too when each names the key); columns a row leaves out are not
        compared. A naive datetime read back from SQLite is taken as UTC.
        """
        __tracebackhide__ = True
        key = [c.name for c in table.primary_key.columns]
        expected = _sorted_by_key(list(rows), key)
        message = compare_lists(
            f"rows of {table.name}",
            expected,
            self.rows(table),
            differences=lambda want, got: field_differences(want, got, words=("expected", "found")),
            label=lambda row: _row_label(row, key),
            describe_expected=lambda row: repr(dict(row)),
            describe_actual=lambda row: repr(dict(row)),
            actual_name="in the table",
        )
        if message is not None:
            raise AssertionError(message)
        return self

    def then_scheduled(self, *expected: Scheduled) -> ConsumerScenario:
        """Assert that exactly these deadlines are pending (in due order)."""
        __tracebackhide__ = True
        wanted = sorted(expected, key=lambda s: (s.due_at, s.name, s.key))
        message = compare_lists(
            "pending deadlines",
            wanted,
            self.scheduled(),
            differences=_deadline_differences,
            label=lambda s: f"{s.name} {s.key!r}",
            describe_expected=repr,
            describe_actual=lambda d: f"{d.name} {d.key!r} due {d.due_at.isoformat()}",
            actual_name="pending",
        )
        if message is not None:
            raise AssertionError(message)
        return self

    # -- internals ----------------------------------------------------------------

    def _store_of(self, context: str) -> EventStore:
        found = self.stores.get(context)
        if found is None:
            found = self.stores[context] = self._new_store(context, full=False)
            # Personal data sealed there is opened with the keys stored there.
            self.store.keys.others.know(context, found.engine)
        return found

    def _new_store(self, context: str, *, full: bool) -> EventStore:
        """A store in a file of the scenario's folder; `full`: with the runtime's
        tables too (our own context's)."""
        # A file, as in production: every connection is its own, with SQLite's
        # own isolation between them (an in-memory database is one connection
        # shared by all). Durability on power loss is no concern of a test.
        path = Path(self._folder.name) / f"{context}.db"
        store = EventStore(f"sqlite:///{path}", context=context, sqlite_synchronous="OFF")
        self._owned.append(store)
        store.create_schema(*(() if full else ("store",)))
        return store

    def _worker(self, cls: type[Consumer]) -> Worker:
        log_consumer = SqlLogConsumer(self.stores)
        options: dict[str, Any] = {"poll_timeout": 0.0, "retry_backoff": 0.0}
        if issubclass(cls, Reactor):
            return Worker(cls(), log_consumer, store=self.store, **options)
        return Worker(cls(), log_consumer, engine=self.engine, codec=self.store.codec, **options)

    def _begin_step(self) -> None:
        self._mark = self.store.head_position()
        self._given.clear()

    def _append(self, given: Stream) -> None:
        store = self._store_of(given.context or self._context_of(given.aggregate_type))
        version = store.stream_versions([given.stream_id]).get(given.stream_id, 0)
        events = [
            recorded(
                event,
                aggregate_type=given.aggregate_type,
                aggregate_id=given.aggregate_id,
                version=version + number,
                at=self.clock.now(),
            )
            for number, event in enumerate(given.events, start=1)
        ]
        store.append(events)
        self._given.update(e.event_id for e in events)

    def _context_of(self, aggregate_type: str) -> str:
        """The context whose topic of `aggregate_type` the consumers read (else our own)."""
        found = sorted({ctx for ctx, kind in self._topics if kind == aggregate_type})
        if len(found) > 1:
            raise ConfigurationError(
                f"the consumers read {aggregate_type!r} events of contexts {found}: say which"
                f" with stream(..., context=...)"
            )
        return found[0] if found else self.context


@dataclass(frozen=True)
class _Expected:
    """An expected event, and the stream it must come from (if the test said)."""

    event: Event
    stream: Stream | None

    def differences(self, actual: Event) -> list[str]:
        found = event_differences(self.event, actual)
        if self.stream is not None and (actual.aggregate_type, actual.aggregate_id) != (
            self.stream.aggregate_type,
            self.stream.aggregate_id,
        ):
            found.append(
                f"recorded by {actual.aggregate_type}:{actual.aggregate_id},"
                f" expected {self.stream.stream_id}"
            )
        return found

    def label(self) -> str:
        name = type(self.event).__name__
        return f"{self.stream.stream_id} {name}" if self.stream is not None else name

    def describe(self) -> str:
        where = f"{self.stream.stream_id} " if self.stream is not None else ""
        return where + describe_event(self.event)


def _describe_recorded(event: Event) -> str:
    return f"{event.aggregate_type}:{event.aggregate_id} {describe_event(event)}"


def _deadline_differences(expected: Scheduled, actual: Deadline) -> list[str]:
    wanted: dict[str, Any] = {"name": expected.name, "key": expected.key, "due_at": expected.due_at}
    found: dict[str, Any] = {"name": actual.name, "key": actual.key, "due_at": actual.due_at}
    if expected.payload is not None:
        wanted["payload"] = dict(expected.payload)
        found["payload"] = actual.payload
    return field_differences(wanted, found)


def _sorted_by_key(rows: list[Mapping[str, Any]], key: list[str]) -> list[Mapping[str, Any]]:
    if not key or not all(all(k in row for k in key) for row in rows):
        return rows
    try:
        return sorted(rows, key=lambda row: tuple(row[k] for k in key))
    except TypeError:
        return rows  # keys of types that do not sort together: as given


def _row_label(row: Mapping[str, Any], key: list[str]) -> str:
    named = [f"{k}={row[k]!r}" for k in key if k in row]
    return ", ".join(named) if named else "row"


def _own_context(
    subject: type[Consumer],
    classes: Iterable[type[Consumer]],
    context: str | None,
    store: EventStore | None,
) -> str:
    if store is not None:
        if context is not None and context != store.context:
            raise ConfigurationError(
                f"context={context!r} but the store given is of context {store.context!r}"
            )
        return store.context
    if context is not None:
        return context
    reactors = [cls.__name__ for cls in classes if issubclass(cls, Reactor)]
    if reactors:
        raise ConfigurationError(
            f"{', '.join(reactors)} saves aggregates of its own bounded context: name it,"
            f' as in given({subject.__name__}, ..., context="<its context>")'
        )
    return DEFAULT_CONTEXT


def _close_all(stores: list[EventStore], folder: tempfile.TemporaryDirectory[str]) -> None:
    for store in stores:
        store.close()
    stores.clear()
    folder.cleanup()
