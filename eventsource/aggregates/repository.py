"""`Repository`: load aggregates from their events and save their new ones."""

from __future__ import annotations

import logging
from typing import Generic, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError

from eventsource.aggregates import snapshots
from eventsource.aggregates.base import Aggregate, check_id
from eventsource.errors import AggregateNotFound, ConfigurationError, StoreError
from eventsource.events.base import Event
from eventsource.events.personal import SubjectKey
from eventsource.events.records import StoredEvent, stream_id_for
from eventsource.observability import tracing
from eventsource.store.driver import DriverConnection, driver_transaction
from eventsource.store.eventstore import EventStore
from eventsource.store.statements import (
    insert_on,
    load_snapshot_on,
    load_stream_on,
    save_snapshot_on,
)

log = logging.getLogger(__name__)

A = TypeVar("A", bound=Aggregate)


class Repository(Generic[A]):
    """Loads and saves aggregates of one type in one store.

    ::

        orders = Repository(store, Order)
        order = orders.get("order-1")      # -> Order
        order.pay()
        position = orders.save(order)

    `snapshot_every` overrides the aggregate class's own setting.
    """

    def __init__(
        self, store: EventStore, aggregate: type[A], *, snapshot_every: int | None = None
    ) -> None:
        if not (isinstance(aggregate, type) and issubclass(aggregate, Aggregate)):
            raise ConfigurationError(f"Repository needs an Aggregate subclass, got {aggregate!r}")
        self.store = store
        self.aggregate = aggregate
        self.snapshot_every = (
            snapshot_every if snapshot_every is not None else aggregate.snapshot_every
        )
        if self.snapshot_every is not None and self.snapshot_every < 1:
            raise ConfigurationError(f"snapshot_every must be positive, got {self.snapshot_every}")
        if self.snapshot_every:
            snapshots.check_no_personal_data(aggregate)
            snapshots.fingerprint(aggregate)  # fail now, not at the first snapshot

    def __repr__(self) -> str:
        return f"Repository({self.store!r}, {self.aggregate.__qualname__})"

    def get(self, aggregate_id: str, *, connection: Connection | None = None) -> A:
        """The aggregate rebuilt from its snapshot and events; `AggregateNotFound` if none."""
        found = self.find(aggregate_id, connection=connection)
        if found is None:
            raise AggregateNotFound(self.aggregate.type_name, aggregate_id)
        return found

    def find(self, aggregate_id: str, *, connection: Connection | None = None) -> A | None:
        """Like `get`, but None when the aggregate has no events."""
        check_id(aggregate_id)
        try:
            if connection is not None:
                return self._load(DriverConnection.of(connection), aggregate_id)
            with driver_transaction(self.store.engine, write=False) as conn:
                return self._load(conn, aggregate_id)
        except DBAPIError as exc:
            raise StoreError(
                f"reading {aggregate_id!r} from {self.store!r} failed: {exc.orig}"
            ) from exc

    def exists(self, aggregate_id: str) -> bool:
        """Whether the aggregate has any events."""
        stream_id = stream_id_for(self.aggregate.type_name, check_id(aggregate_id))
        return bool(self.store.stream_versions([stream_id]))

    def save(self, *aggregates: A, connection: Connection | None = None) -> int:
        """Append every pending event of `aggregates` in one transaction.

        Returns the global position of the last event written (0 when nothing
        was pending), which `wait_for` accepts. Raises `ConcurrencyError`, and
        records nothing, when another writer saved one of the streams first.
        With `connection`, the append joins the caller's transaction.
        """
        pending = [(aggregate, list(aggregate._es_pending)) for aggregate in aggregates]
        events = [event for _, batch in pending for event in batch]
        if not events:
            return 0
        if tracing.active():
            attributes = {
                "eventsource.context": self.store.context,
                "eventsource.aggregate_type": self.aggregate.type_name,
                "eventsource.events": len(events),
            }
            with tracing.span(f"eventsource save {self.aggregate.type_name}", attributes):
                return self._save(aggregates, pending, events, connection)
        return self._save(aggregates, pending, events, connection)

    def _save(
        self,
        aggregates: tuple[A, ...],
        pending: list[tuple[A, list[Event]]],
        events: list[Event],
        connection: Connection | None,
    ) -> int:
        records = [self.store.codec.encode(event) for event in events]
        if tracing.active():
            records = tracing.stamp(records)  # the trace travels with each event
        if connection is not None:
            position, _ = self._write(DriverConnection.of(connection), pending, events, records)
        else:
            try:
                # Only appends (and a snapshot after them): BEGIN IMMEDIATE on
                # SQLite, and on PostgreSQL the events table's trigger takes the
                # appenders' lock before any row is written.
                with driver_transaction(self.store.engine, write=True) as conn:
                    position, written = self._write(conn, pending, events, records)
            except IntegrityError as exc:
                raise self.store.conflict_error(records, exc) from exc
            except DBAPIError as exc:
                raise StoreError(f"saving to {self.store!r} failed: {exc.orig}") from exc
            if written:
                self.store.keys.committed(written)
        for aggregate in aggregates:
            aggregate._mark_saved()
        return position

    # -- internals -------------------------------------------------------------

    def _write(
        self,
        conn: DriverConnection,
        pending: list[tuple[A, list[Event]]],
        events: list[Event],
        records: list[StoredEvent],
    ) -> tuple[int, dict[str, SubjectKey]]:
        written: dict[str, SubjectKey] = {}
        if self.store.keys.unsettled:
            # A subject's first key is written with the first events sealed with it.
            records, written = self.store.write_keys(conn, events, records)
        positions = insert_on(conn, records)
        every = self.snapshot_every
        if every:
            for aggregate, batch in pending:
                if batch and aggregate.version // every > (aggregate.version - len(batch)) // every:
                    self._snapshot(conn, aggregate)
        return positions[-1], written

    def _snapshot(self, conn: DriverConnection, aggregate: Aggregate) -> None:
        cls = type(aggregate)
        save_snapshot_on(
            conn,
            stream_id=stream_id_for(cls.type_name, aggregate.id),
            aggregate_type=cls.type_name,
            version=aggregate.version,
            fingerprint=snapshots.fingerprint(cls),
            state=snapshots.take(aggregate),
        )

    def _load(self, conn: DriverConnection, aggregate_id: str) -> A | None:
        cls = self.aggregate
        stream_id = stream_id_for(cls.type_name, aggregate_id)
        aggregate = (
            self._from_snapshot(conn, stream_id, aggregate_id) if self.snapshot_every else None
        )
        after = aggregate.version if aggregate is not None else 0
        records = load_stream_on(conn, cls.type_name, aggregate_id, after)
        if aggregate is None:
            if not records:
                return None
            aggregate = cls._blank(aggregate_id)
        decode = self.store.codec.decode
        aggregate._apply_history(decode(record) for record in records)
        return aggregate

    def _from_snapshot(self, conn: DriverConnection, stream_id: str, aggregate_id: str) -> A | None:
        found = load_snapshot_on(conn, stream_id)
        if found is None:
            return None
        version, fingerprint, state = found
        if fingerprint != snapshots.fingerprint(self.aggregate):
            return None  # taken by an older shape of the class: replay instead
        try:
            restored = snapshots.restore(self.aggregate, aggregate_id, version, state)
        except ValueError as exc:
            log.warning(
                "ignoring unreadable snapshot of %s at version %d: %s", stream_id, version, exc
            )
            return None
        return restored  # type: ignore[return-value]
