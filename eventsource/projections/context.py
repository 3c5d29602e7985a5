"""What every job of a worker shares: the consumer, its database, its view.

The loop, the batch, the failure policy and upkeep each get this one object
instead of the worker itself, so none of them imports another's module and
each can be built and tested alone. Everything here is used by the worker's
own thread only (see `Worker`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, Table

from eventsource.aggregates.base import caused_by
from eventsource.errors import EventSourceError
from eventsource.events.base import Event
from eventsource.events.codec import EventCodec
from eventsource.projections.base import Consumer, Reactor
from eventsource.projections.reaction import Reaction
from eventsource.projections.view import View
from eventsource.store.engine import write_connection
from eventsource.store.eventstore import EventStore


@dataclass
class WorkerContext:
    """A consumer bound to its database: where its transactions, view and
    (for a reactor) new events go.

    `key` names its positions, state and dead letters: the consumer's name,
    or a rebuild's own key. `physical` maps declared table names to the
    tables actually written (a rebuild's copies).
    """

    consumer: Consumer
    engine: Engine
    codec: EventCodec
    view: View
    key: str
    store: EventStore | None = None
    physical: Mapping[str, Table] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        consumer: Consumer,
        *,
        engine: Engine | None,
        store: EventStore | None,
        codec: EventCodec | None,
        key: str | None,
        physical: Mapping[str, Table] | None,
        cache_rows: int | None,
    ) -> WorkerContext:
        if isinstance(consumer, Reactor) and store is None:
            raise EventSourceError(
                f"reactor {type(consumer).name!r} needs the store of its own context"
            )
        if store is None and engine is None:
            raise EventSourceError("a projection worker needs the engine of its view database")
        tables = dict(physical or {})
        view = View(
            type(consumer).tables,
            physical=tables,
            **({"cache_rows": cache_rows} if cache_rows is not None else {}),
        )
        return cls(
            consumer=consumer,
            engine=store.engine if store is not None else engine,  # type: ignore[arg-type]
            codec=codec or (store.codec if store is not None else EventCodec()),
            view=view,
            key=key or type(consumer).name,
            store=store,
            physical=tables,
        )

    @property
    def name(self) -> str:
        return type(self.consumer).name

    @property
    def kind(self) -> str:
        return "reactor" if isinstance(self.consumer, Reactor) else "projection"

    @property
    def tables(self) -> list[Table]:
        """The tables written: the declared ones, or their rebuild copies."""
        return [self.physical.get(t.name, t) for t in type(self.consumer).tables]

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction on the consumer's database (a reactor's: on its store,
        taking the appenders' lock first, so its new events commit in order)."""
        if self.store is not None:
            with self.store.transaction() as conn:
                yield conn
        else:
            with write_connection(self.engine) as conn, conn.begin():
                yield conn

    def reaction(self, conn: Connection) -> Reaction | None:
        """A reactor's unit of work in `conn`'s transaction (None for a projection)."""
        if self.store is None:
            return None
        return Reaction(self.store, conn, self.view, owner=self.key)

    def handle(self, handler: Callable[..., None], event: Event, reaction: Reaction | None) -> None:
        """Call a handler: a reactor's with the reaction, caused by the event;
        a projection's with the view."""
        if reaction is None:
            handler(self.consumer, event, self.view)
            return
        reaction.cause = event
        with caused_by(event):
            handler(self.consumer, event, reaction)
