"""One batch: decode its messages, fold them into the view, write the view's
rows and the new positions in one transaction.

Exactly once, after a crash at any point: the view changes (or a reactor's
new events) and the positions commit together, and a position row moves
only from the revision this worker read (`positions.advance`), so a worker
that lost its partitions cannot commit over its successor.

A batch is opened and folded (`fold`), then written and committed
(`finish`), then acknowledged (`done`): the commit pipeline runs `finish`
on another thread while the next batch is read; `finish` touches nothing
that polling or folding uses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter

from sqlalchemy import Connection
from sqlalchemy.exc import (
    DataError,
    IntegrityError,
    ProgrammingError,
)

from eventsource.bus.base import LogMessage, TopicPartition
from eventsource.bus.polled import Polled, ends_of
from eventsource.errors import DecodeError, StoreUnavailable
from eventsource.events.base import Event
from eventsource.events.records import StoredEvent
from eventsource.observability import tracing
from eventsource.projections import deadletters, positions
from eventsource.projections.context import WorkerContext
from eventsource.projections.positions import Position
from eventsource.projections.reaction import Reaction

log = logging.getLogger(__name__)

# Errors the same batch would hit again when the view writes its rows: it
# is the data (a constraint, a value out of range), not the moment.
DETERMINISTIC = (IntegrityError, DataError, ProgrammingError)

Moves = dict[TopicPartition, tuple[Position, int, int]]


@dataclass
class BatchStats:
    """What one step of a worker did."""

    messages: int = 0
    applied: int = 0
    retried: bool = False


@dataclass
class OpenBatch:
    """A folded batch whose transaction is still open."""

    messages: Sequence[LogMessage]
    moves: Moves
    transaction: ExitStack  # leaving it commits (or, on an error, rolls back)
    conn: Connection
    reaction: Reaction | None
    advanced: dict[TopicPartition, Position] = field(default_factory=dict)


class HandlerFailed(Exception):
    """A message's handler (or decoding) failed; `index` says which (None: unknown)."""

    def __init__(self, index: int | None, error: BaseException) -> None:
        super().__init__(str(error))
        self.index = index
        self.error = error


class Batches:
    """Folds and writes batches for one consumer.

    `held` is the worker's map of the partitions it holds to their positions
    as of its last commit; `done` moves it on.
    """

    def __init__(self, context: WorkerContext, held: dict[TopicPartition, Position]) -> None:
        self.context = context
        self.held = held
        self.applied = 0
        # Whether a dead letter says the worker once stopped on a message:
        # the batch that gets past it closes that dead letter.
        self.stopped_on = False
        self.last_occurred_at: datetime | None = None  # of the last event applied
        self._wanted_types: dict[str, bool] = {}

    # -- the synchronous path --------------------------------------------------

    def commit(self, messages: Sequence[LogMessage]) -> None:
        """Fold, write and commit `messages` on this thread."""
        batch = self.fold(messages)
        try:
            self.finish(batch)
        except BaseException:
            self.context.view.rollback()
            raise
        self.done(batch)

    # -- the three stages ------------------------------------------------------

    def fold(self, messages: Sequence[LogMessage]) -> OpenBatch:
        """Open the batch's transaction and fold the batch into the view (nothing
        written yet); on failure the transaction is rolled back."""
        context = self.context
        moves = self.moves(messages)
        stack = ExitStack()
        conn = stack.enter_context(context.transaction())
        reaction: Reaction | None = None
        try:
            context.view.begin(conn)
            reaction = context.reaction(conn)
            blocked = self._blocked(conn)
            parked = self._fold(messages, reaction, blocked)
            for message in parked:
                deadletters.park(
                    conn,
                    context.key,
                    message,
                    "waits behind a parked event of its stream",
                    deadletters.BLOCKED,
                )
            if self.stopped_on:
                moved = {(tp.topic, tp.partition): m[1] for tp, m in moves.items()}
                deadletters.resolve_stopped(conn, context.key, moved)
        except BaseException as exc:
            context.view.rollback()
            stack.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return OpenBatch(messages, moves, stack, conn, reaction)

    def finish(self, batch: OpenBatch) -> None:
        """Write a folded batch's rows and positions and commit (or roll back).

        Touches nothing the next poll uses, so it may run on the commit
        pipeline's thread while the next batch is read.
        """
        context = self.context
        reaction = batch.reaction
        try:
            with batch.transaction:
                try:
                    context.view.flush()
                except DETERMINISTIC as exc:
                    # The view refused the batch's rows (a constraint, bad data).
                    raise HandlerFailed(None, exc) from exc
                if reaction is not None:
                    reaction.flush()
                batch.advanced = positions.advance(batch.conn, context.key, batch.moves)
        except IntegrityError as exc:
            if reaction is not None and context.store is not None:
                # Appends are serialised (the commit-order lock), so no other
                # writer ran during the batch: the conflict is the batch's own
                # doing, and the whole batch again would conflict again.
                conflict = context.store.conflict_error(reaction.pending_records(), exc)
                raise HandlerFailed(None, conflict) from exc
            raise

    def done(self, batch: OpenBatch) -> None:
        """The batch committed: the view's cache and the positions move on."""
        self.context.view.commit()
        self.held.update(batch.advanced)
        self.applied += len(batch.messages)
        for message in reversed(batch.messages):
            if message.record is not None:
                self.last_occurred_at = message.record.occurred_at
                break

    # -- folding ---------------------------------------------------------------

    def _decode(self, record: StoredEvent) -> Event | DecodeError | None:
        """The record's event, None if no handler wants its type, or why it failed."""
        wanted = self._wanted_types.get(record.event_type)
        if not (self._wanted(record.event_type) if wanted is None else wanted):
            return None
        try:
            return self.context.codec.decode(record)
        except DecodeError as exc:
            return exc

    def _fold(
        self,
        messages: Sequence[LogMessage],
        reaction: Reaction | None,
        blocked: set[str],
    ) -> list[LogMessage]:
        """Apply each message's handler; return the messages parked behind others.

        Each event is decoded just before its handler runs and dropped after
        it: a batch's events never live all at once, and the garbage
        collector's young generations free them instead of promoting
        thousands of them to the oldest one, whose collections walk every
        object the process holds.
        """
        # The loop runs for every event of a rebuild: look things up once.
        context = self.context
        decode = self._decode
        handlers = _Handlers(type(context.consumer).handler_for)
        consumer, view, handle = context.consumer, context.view, context.handle
        traced = tracing.active()
        parked: list[LogMessage] = []
        for index, message in enumerate(messages):
            record = message.record
            if record is None:
                raise HandlerFailed(index, message.error or DecodeError("empty message"))
            if blocked and record.stream_id in blocked:
                parked.append(message)
                continue
            event = decode(record)
            if event is None:
                continue
            if isinstance(event, DecodeError):
                located = event.at(
                    topic=message.topic, partition=message.partition, offset=message.offset
                )
                raise HandlerFailed(index, located) from event
            handler = handlers[type(event)]
            if handler is None:
                continue
            try:
                if traced:
                    self._traced(handler, event, record.metadata, reaction)
                elif reaction is None:
                    handler(consumer, event, view)
                else:
                    handle(handler, event, reaction)
            except StoreUnavailable:
                raise  # the database's trouble (a lost connection, a deadlock), not the event's
            except Exception as exc:
                raise HandlerFailed(index, exc) from exc
        return parked

    def _traced(
        self,
        handler: Callable[..., None],
        event: Event,
        metadata: str,
        reaction: Reaction | None,
    ) -> None:
        """A handler call as a span whose parent is the span that saved the event."""
        context = self.context
        attributes = {
            "eventsource.consumer": context.name,
            "eventsource.event_type": event.event_type,
            "eventsource.aggregate_id": event.aggregate_id,
            "eventsource.position": event.position,
        }
        name = f"eventsource handle {event.event_type}"
        with tracing.handling(name, tracing.traceparent_of(metadata), attributes):
            context.handle(handler, event, reaction)

    def _blocked(self, conn: Connection) -> set[str]:
        """Streams with parked events (park mode), read under the replay lock."""
        context = self.context
        if type(context.consumer).on_failure != "park":
            return set()
        deadletters.lock(conn, context.key)
        return deadletters.blocked_streams(conn, context.key)

    def _wanted(self, event_type: str) -> bool:
        """Whether events of this type have a handler: others are not even decoded.

        A type this process has no class for is skipped too (a tolerant
        reader: the producing context may have added it since).
        """
        wanted = self._wanted_types.get(event_type)
        if wanted is None:
            context = self.context
            cls = context.codec.registry.resolve(event_type)
            wanted = cls is not None and type(context.consumer).handler_for(cls) is not None
            if cls is None:
                log.warning(
                    "%s %s skips events of unknown type %r", context.kind, context.name, event_type
                )
            self._wanted_types[event_type] = wanted
        return wanted

    def moves(self, messages: Sequence[LogMessage]) -> Moves:
        """Each partition's move: from the position held to the next offset and
        the highest global position of the batch."""
        held = self.held
        moves: Moves = {}
        for tp, (offset, position) in ends_of(messages).items():
            seen = held[tp]
            moves[tp] = (seen, offset, max(seen.last_position, position))
        return moves

    def owned(self, messages: Sequence[LogMessage]) -> Sequence[LogMessage]:
        """The messages of partitions still held: those revoked since the poll
        belong to another worker now."""
        held = self.held
        # Usually all are: find out from a Kafka batch's partitions, or from
        # a list in one pass in C (a (topic, partition) pair is equal to its
        # `TopicPartition`), and filter only if not.
        if isinstance(messages, Polled):
            everything = all(tp in held for tp in messages.ends)
        else:
            everything = all(map(held.__contains__, map(_partition_of, messages)))
        if everything:
            return messages
        return [m for m in messages if m.topic_partition in held]


_partition_of = itemgetter(0, 1)  # a LogMessage's (topic, partition)


class _Handlers(dict[type[Event], Callable[..., None] | None]):
    """Each event class's handler, asked of the consumer class once per batch
    (a dict lookup per event instead of a class-method call)."""

    def __init__(self, handler_for: Callable[[type[Event]], Callable[..., None] | None]) -> None:
        super().__init__()
        self._handler_for = handler_for

    def __missing__(self, cls: type[Event]) -> Callable[..., None] | None:
        found = self[cls] = self._handler_for(cls)
        return found
