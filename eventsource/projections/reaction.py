"""`Reaction`: what reactor handlers use to load and save their context's aggregates.

Saves are buffered and appended when the batch commits, in the same
transaction as the reactor's positions, so a reaction happens exactly once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Executable, Result

from eventsource.aggregates.base import Aggregate, check_id
from eventsource.aggregates.repository import Repository
from eventsource.errors import AggregateNotFound, ConcurrencyError
from eventsource.events.base import Event
from eventsource.events.codec import stamp
from eventsource.events.records import StoredEvent, stream_id_for
from eventsource.projections import deadlines
from eventsource.projections.view import View
from eventsource.store.eventstore import EventStore

A = TypeVar("A", bound=Aggregate)


class Reaction:
    """One batch's unit of work for a reactor."""

    def __init__(
        self,
        store: EventStore,
        connection: Connection,
        view: View,
        *,
        owner: str,
        cause: Event | None = None,
    ) -> None:
        self.store = store
        self.view = view
        self.owner = owner
        self.cause = cause
        self._connection = connection
        self._repositories: dict[type[Aggregate], Repository[Any]] = {}
        self._loaded: dict[tuple[str, str], Aggregate] = {}
        self._saved: dict[tuple[str, str], Aggregate] = {}
        self._appended: list[Event] = []

    def repository(self, aggregate: type[A]) -> ReactionRepository[A]:
        """A repository of `aggregate` whose saves commit with this batch."""
        repository = self._repositories.get(aggregate)
        if repository is None:
            repository = self._repositories[aggregate] = Repository(self.store, aggregate)
        return ReactionRepository(self, repository)

    def query(self, statement: Executable) -> Result[Any]:
        """Read other tables of the context's database (a projection's view, say)
        within this batch's transaction."""
        return self._connection.execute(statement)

    def schedule(
        self,
        name: str,
        key: str,
        due_at: datetime,
        payload: dict[str, Any] | None = None,
        *,
        cause: Event | None = None,
    ) -> None:
        """Run this reactor's `@deadline(name)` handler for `key` at `due_at`.

        Recorded in this batch's transaction (scheduling happens exactly
        once). Scheduling the same `(name, key)` again replaces what was
        there: a pending schedule never runs with its old time or payload;
        the new one runs once, at its own time (`eventsource.projections.deadlines`).
        """
        cause = cause or self.cause
        deadlines.schedule(
            self._connection,
            owner=self.owner,
            name=name,
            key=key,
            due_at=due_at,
            payload=payload or {},
            cause_id=cause.event_id if cause else None,
            correlation_id=(cause.correlation_id or cause.event_id) if cause else None,
        )

    def cancel(self, name: str, key: str) -> None:
        """Cancel the pending deadline `(name, key)` (a no-op if there is none)."""
        deadlines.cancel(self._connection, owner=self.owner, name=name, key=key)

    def append(self, *events: Event) -> None:
        """Append events that no aggregate triggered (a transform's output)
        when the batch commits.

        Each event's `aggregate_type` and `aggregate_id` name its stream;
        its version continues the stream's, in the order appended. Its other
        metadata (id, time, correlation and causation) must be stamped
        already: nothing else may hold the events.
        """
        self._appended.extend(events)

    def pending_records(self) -> list[StoredEvent]:
        """The records the batch tried to append (to name a conflict after a rollback)."""
        encode = self.store.codec.encode
        saved = [encode(e) for a in self._saved.values() for e in a.pending_events]
        return saved + [encode(e) for e in self._appended if e.version > 0]

    def flush(self) -> int:
        """Append every saved aggregate's pending events; return how many."""
        by_type: dict[type[Aggregate], list[Aggregate]] = {}
        for aggregate in self._saved.values():
            by_type.setdefault(type(aggregate), []).append(aggregate)
        count = 0
        for cls, aggregates in by_type.items():
            count += sum(len(a.pending_events) for a in aggregates)
            self.repository(cls).repository.save(*aggregates, connection=self._connection)
        if self._appended:
            count += self._flush_appended()
        return count

    def _flush_appended(self) -> int:
        """Number the appended events after their streams' versions and append them."""
        streams = [stream_id_for(e.aggregate_type, e.aggregate_id) for e in self._appended]
        versions = self.store.stream_versions(set(streams), connection=self._connection)
        for stream_id, event in zip(streams, self._appended, strict=True):
            versions[stream_id] = version = versions.get(stream_id, 0) + 1
            stamp(event, version=version)
        self.store.append(self._appended, connection=self._connection)
        return len(self._appended)


class ReactionRepository(Generic[A]):
    """`get`, `find` and `save` within a reaction; saves wait for the batch to commit.

    Within one batch the same aggregate is the same object, so a second
    event in the batch sees what the first one changed.
    """

    def __init__(self, reaction: Reaction, repository: Repository[A]) -> None:
        self.reaction = reaction
        self.repository = repository

    def find(self, aggregate_id: str) -> A | None:
        key = (self.repository.aggregate.type_name, check_id(aggregate_id))
        known = self.reaction._saved.get(key)
        if known is None:
            known = self.reaction._loaded.get(key)
        if known is not None:
            return known  # type: ignore[return-value]
        found = self.repository.find(aggregate_id, connection=self.reaction._connection)
        if found is not None:
            self.reaction._loaded[key] = found
        return found

    def get(self, aggregate_id: str) -> A:
        found = self.find(aggregate_id)
        if found is None:
            raise AggregateNotFound(self.repository.aggregate.type_name, aggregate_id)
        return found

    def save(self, *aggregates: A) -> None:
        for aggregate in aggregates:
            key = (type(aggregate).type_name, aggregate.id)
            known = self.reaction._saved.get(key)
            if known is not None and known is not aggregate:
                # A second object for one stream (say, created anew instead of
                # loaded): keeping either would drop the other's events.
                raise ConcurrencyError(
                    stream_id_for(*key),
                    aggregate.version - len(aggregate.pending_events),
                    known.version,
                )
            self.reaction._saved[key] = aggregate
            self.reaction._loaded[key] = aggregate
