"""The worker: poll a batch, fold it, commit the view and the positions together.

Exactly once, after a crash at any point: the view changes and the new
positions are written in one SQL transaction, and a restarted worker resumes
from the stored positions, never from Kafka's committed offsets. A position
row is advanced only if its revision is still the one the worker read, so a
worker that lost its partitions cannot commit over its successor.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter

from sqlalchemy import Connection, Engine, Table, select
from sqlalchemy.exc import (
    DataError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
)

from eventsource.aggregates.base import caused_by
from eventsource.bus.base import LogConsumer, LogMessage, StartAt, TopicPartition
from eventsource.errors import (
    ConcurrencyError,
    DecodeError,
    EventSourceError,
    PoisonEvent,
    ProjectionVersionMismatch,
    StalePosition,
)
from eventsource.events.base import Event
from eventsource.events.codec import EventCodec
from eventsource.gc_pause import BatchedCollection, paused_gc
from eventsource.projections import deadletters, positions, upkeep
from eventsource.projections.base import Consumer, Reactor
from eventsource.projections.positions import Position
from eventsource.projections.reaction import Reaction
from eventsource.projections.tables import create_missing
from eventsource.projections.view import View
from eventsource.store.engine import read_transaction, write_connection
from eventsource.store.eventstore import EventStore, upgrade_schema
from eventsource.switch_interval import short_switch_interval

log = logging.getLogger(__name__)

# Errors that go away by themselves: another writer of a reactor's aggregates,
# a deadlock, a lost connection, a locked SQLite file. The batch runs again.
_TRANSIENT = (ConcurrencyError, OperationalError, InterfaceError)


def transient(exc: BaseException) -> bool:
    """Whether an error goes away by itself (so the batch is simply run again).

    SQLite reports its deterministic errors ("no such table", a syntax error)
    as OperationalError too; of those only a locked or busy database passes.
    """
    if isinstance(exc, OperationalError):
        orig = getattr(exc, "orig", None)
        if type(orig).__module__ == "sqlite3":
            text = str(orig).lower()
            return "locked" in text or "busy" in text
    return isinstance(exc, _TRANSIENT)


# Errors the same batch would hit again: it is the data, not the moment.
_DETERMINISTIC = (IntegrityError, DataError, ProgrammingError)


@dataclass
class BatchStats:
    """What one call of `Worker.step` did."""

    messages: int = 0
    applied: int = 0
    retried: bool = False


@dataclass
class _OpenBatch:
    """A folded batch whose transaction is still open."""

    messages: Sequence[LogMessage]
    moves: dict[TopicPartition, tuple[Position, int, int]]
    transaction: ExitStack  # leaving it commits (or, on an error, rolls back)
    conn: Connection
    reaction: Reaction | None
    advanced: dict[TopicPartition, Position] = field(default_factory=dict)


@dataclass
class _InFlight:
    """A batch committing on the committer thread while the next one is read."""

    batch: _OpenBatch
    stats: BatchStats
    done: Future[None]


class _HandlerFailed(Exception):
    """A message's handler (or decoding) failed; `index` says which (None: unknown)."""

    def __init__(self, index: int | None, error: BaseException) -> None:
        super().__init__(str(error))
        self.index = index
        self.error = error


class Worker:
    """Runs one projection or reactor against a log.

    ::

        worker = Worker(MyProjection(), log, engine=views_engine)
        worker.run(stop=stop_event)

    Projections write to `engine` (their context's database). Reactors write
    to `store`, whose database also holds their positions, so their new
    events and positions commit together.
    """

    def __init__(
        self,
        consumer: Consumer,
        log_consumer: LogConsumer,
        *,
        engine: Engine | None = None,
        store: EventStore | None = None,
        codec: EventCodec | None = None,
        batch_size: int = 1000,
        poll_timeout: float = 0.2,
        retry_backoff: float = 0.2,
        positions_key: str | None = None,
        physical: Mapping[str, Table] | None = None,
        check_version: bool = True,
        cache_rows: int | None = None,
    ) -> None:
        if isinstance(consumer, Reactor) and store is None:
            raise EventSourceError(f"reactor {consumer.name!r} needs the store of its own context")
        self.consumer = consumer
        self.log = log_consumer
        self.store = store
        self.engine: Engine = store.engine if store is not None else _require(engine)
        self.codec = codec or (store.codec if store is not None else EventCodec())
        self.batch_size = batch_size
        self.poll_timeout = poll_timeout
        self.retry_backoff = retry_backoff
        self.name = type(consumer).name
        self.key = positions_key or self.name
        self.physical = dict(physical or {})
        self.check_version = check_version
        self.view = View(
            type(consumer).tables,
            physical=self.physical,
            **({"cache_rows": cache_rows} if cache_rows is not None else {}),
        )
        self.applied = 0
        self._positions: dict[TopicPartition, Position] = {}
        self._wanted_types: dict[str, bool] = {}
        self._stopped_on = False
        self._started = False
        self._idle_checked = 0.0
        self._committer: ThreadPoolExecutor | None = None
        self._in_flight: _InFlight | None = None
        self._resyncs = 0
        self._collection: BatchedCollection | None = None

    @property
    def kind(self) -> str:
        return "reactor" if isinstance(self.consumer, Reactor) else "projection"

    @property
    def positions(self) -> dict[TopicPartition, Position]:
        """The positions this worker holds (as of its last commit)."""
        return dict(self._positions)

    # -- start-up --------------------------------------------------------------

    def start(self) -> None:
        """Check the class, prepare tables and positions, and subscribe to the log."""
        if self._started:
            return
        cls = type(self.consumer)
        cls.check()
        self.start_tables()
        with self._transaction() as conn:
            stored = positions.register(conn, self.key, self.kind, cls.version)
            if self.check_version and stored != cls.version:
                raise ProjectionVersionMismatch(self.name, stored, cls.version)
            positions.set_status(conn, self.key, "running", clear_error=True)
            self._stopped_on = deadletters.has_stopped(conn, self.key)
        self.consumer.setup()
        self.log.subscribe(list(cls.topics), self._on_assign, self._on_revoke)
        self._started = True

    @property
    def tables(self) -> list[Table]:
        """The tables written: the declared ones, or their rebuild copies."""
        return [self.physical.get(t.name, t) for t in type(self.consumer).tables]

    def _on_assign(self, partitions: list[TopicPartition]) -> dict[TopicPartition, StartAt]:
        self._settle(reapply=False)
        with self._transaction() as conn:
            loaded = positions.load(conn, self.key, partitions)
            fresh = all(p.revision == 0 for p in loaded.values()) and self._tables_empty(conn)
        self._positions.update(loaded)
        owns = self._owns_everything()
        self.view.shared = not owns
        if fresh and owns:
            self.view.mark_empty()
        else:
            self.view.clear_cache()
        log.info("%s %s resumes at %s", self.kind, self.name, _describe(loaded))
        return {tp: p.start for tp, p in loaded.items()}

    def _on_revoke(self, partitions: list[TopicPartition]) -> None:
        # The batch in flight commits before the partitions go: their next
        # owner starts from the positions it wrote.
        self._settle(reapply=False)
        for tp in partitions:
            self._positions.pop(tp, None)
        self.view.clear_cache()

    def _tables_empty(self, conn: Connection) -> bool:
        return all(
            conn.execute(select(1).select_from(t).limit(1)).first() is None for t in self.tables
        )

    def _owns_everything(self) -> bool:
        # With partitions spread over several workers, two workers may write
        # one view row: then rows must be re-read (and locked) in every batch.
        return all(
            len([tp for tp in self._positions if tp.topic == topic]) >= self.log.partitions(topic)
            for topic in type(self.consumer).topics
        )

    # -- running ---------------------------------------------------------------

    def run(
        self,
        *,
        stop: threading.Event | None = None,
        until_caught_up: bool = False,
        on_batch: Callable[[Worker, BatchStats], None] | None = None,
    ) -> int:
        """Process batches until `stop` is set (or the log's end, with `until_caught_up`).

        Returns the number of messages applied. Raises `PoisonEvent` when a
        handler keeps failing and the consumer's `on_failure` is "stop".

        A projection writing PostgreSQL commits each batch on a second
        thread while the next batch is read, so the database's work overlaps
        the log's. A batch is folded only once the one before it has
        committed, and `run` returns only after the last one has.
        """
        stop = stop or threading.Event()
        self.start()
        before = self.applied
        ahead = self._commits_behind()
        context = ExitStack()
        self._collection = BatchedCollection(self.COLLECT_EVERY)
        context.callback(self._collection.release)
        if ahead:
            self._committer = ThreadPoolExecutor(1, thread_name_prefix=f"commit-{self.name}")
            context.enter_context(short_switch_interval())
        try:
            while not stop.is_set():
                stats = self._step_ahead() if ahead else self.step()
                if on_batch is not None:
                    on_batch(self, stats)
                if stats.messages == 0 and until_caught_up and self.log.caught_up():
                    break
            self._settle(reapply=True)
        finally:
            self._settle(reapply=False)
            committer, self._committer = self._committer, None
            if committer is not None:
                committer.shutdown()
            context.close()
            self._collection = None
        with self._transaction() as conn:
            positions.set_status(conn, self.key, "stopped")
        return self.applied - before

    # Batches between two cyclic collections while `run` loops (see `BatchedCollection`).
    COLLECT_EVERY = 16

    def _gc_paused(self) -> AbstractContextManager[None]:
        """Collection held for a batch: across several within `run`, else this one's."""
        return paused_gc() if self._collection is None else self._collection.batch()

    def _commits_behind(self) -> bool:
        """Whether `run` commits each batch on the committer thread.

        Only a projection's, and only into PostgreSQL, whose work runs in its
        own process. SQLite works inside this one: a second thread writing it
        made the SQLite rebuild 22% slower (Python's sqlite3 gives up the GIL
        at every row it steps), and still twice as slow with every read and
        write one statement. A reactor's batch holds the store's commit-order
        lock and is usually small: it stays on one thread.
        """
        return self.engine.dialect.name == "postgresql" and not isinstance(self.consumer, Reactor)

    def step(self) -> BatchStats:
        """Poll one batch and apply it; returns what happened."""
        self.start()
        self._settle(reapply=True)
        # A batch builds thousands of short-lived, acyclic objects: collect after it.
        with self._gc_paused():
            messages = self.log.poll(self.batch_size, self.poll_timeout)
            stats = BatchStats(messages=len(messages))
            if messages:
                self._apply(messages, stats)
            else:
                self._check_when_idle()
        return stats

    def _step_ahead(self) -> BatchStats:
        """`step`, but the batch commits on the committer thread while the next is read."""
        with self._gc_paused():
            messages = self.log.poll(self.batch_size, self.poll_timeout)
            stats = BatchStats(messages=len(messages))
            # Decoding needs nothing from the database: do it while the commit runs too.
            decoded: Sequence[Event | DecodeError | None] | None = self._decode_ahead(messages)
            if not self._settle(reapply=True):
                return stats  # positions were re-read: what was polled is stale
            if not messages:
                self._check_when_idle()
                return stats
            pending = self._owned(messages)
            if not pending:
                return stats
            if pending is not messages:
                decoded = None  # no longer in step with the messages
            try:
                batch = self._fold_batch(pending, decoded)
            except Exception as exc:
                # The synchronous path sorts it out: retries, the culprit, poison.
                self._apply(pending, stats, failed=_classified(exc))
                return stats
            assert self._committer is not None
            done = self._committer.submit(self._finish_batch, batch)
            self._in_flight = _InFlight(batch, stats, done)
            stats.applied = len(pending)
        return stats

    def _settle(self, *, reapply: bool) -> bool:
        """Wait for the batch in flight, if any. Returns False if positions were
        re-read meanwhile (messages polled before are then stale).

        If its commit failed, the batch is applied again the synchronous way
        (`reapply`), or dropped: then its partitions are about to be assigned
        afresh, from their stored positions.
        """
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is None:
            return True
        try:
            in_flight.done.result()
        except BaseException as exc:
            self.view.rollback()
            in_flight.stats.applied = 0
            if not reapply or not isinstance(exc, Exception):
                if isinstance(exc, StalePosition):
                    log.warning("%s; re-reading positions", exc)
                else:
                    log.warning(
                        "%s %s: a batch failed to commit (%s); its partitions resume"
                        " from their stored positions",
                        self.kind,
                        self.name,
                        exc,
                    )
                return False
            # The synchronous path sorts it out: retries, the culprit, poison, resync.
            resyncs = self._resyncs
            self._apply(in_flight.batch.messages, in_flight.stats, failed=_classified(exc))
            return self._resyncs == resyncs
        self._batch_done(in_flight.batch)
        return True

    # How often an idle worker looks whether its positions moved under it.
    IDLE_CHECK_SECONDS = 1.0

    def _check_when_idle(self) -> None:
        """Notice positions that moved under us while there is nothing to apply.

        A rebuild's swap puts its own positions (and a newer view) in place; a
        busy worker learns of it when its next commit is refused, but an idle
        one would sit past events the swapped-in view lacks until the next
        event arrives. Reading the revisions is one small query a second.
        """
        now = time.monotonic()
        if not self._positions or now - self._idle_checked < self.IDLE_CHECK_SECONDS:
            return
        self._idle_checked = now
        with read_transaction(self.engine) as conn:
            stored = positions.all_positions(conn, self.key)
        if any(
            tp in stored and stored[tp].revision != mine.revision
            for tp, mine in self._positions.items()
        ):
            log.info(
                "%s %s: positions moved (a rebuild swapped in?); re-reading them",
                self.kind,
                self.name,
            )
            self._resync()

    def _owned(self, messages: Sequence[LogMessage]) -> Sequence[LogMessage]:
        """The messages of partitions still ours: those revoked since the poll
        belong to another worker now."""
        owned = {(tp.topic, tp.partition) for tp in self._positions}
        # Usually all are: find out with one pass in C, and filter only if not.
        if owned.issuperset(map(_partition_of, messages)):
            return messages
        return [m for m in messages if (m.topic, m.partition) in owned]

    def _apply(
        self,
        messages: Sequence[LogMessage],
        stats: BatchStats,
        failed: BaseException | None = None,
    ) -> None:
        """Apply `messages`, retrying, finding the culprit and parking as needed.

        `failed`: how a first attempt at the whole batch already failed.
        """
        pending = self._owned(messages)
        limit = len(pending)
        attempt = 0
        culprit: _HandlerFailed | None = None  # how pending[limit] failed, once known
        while pending:
            batch = pending[:limit]
            try:
                if failed is not None:
                    error, failed = failed, None
                    raise error
                if limit == 0 and culprit is not None:
                    # Its first attempt failed already: retry it alone, or it is poison.
                    batch = pending[:1]
                    self._retry_alone(batch[0], culprit)
                else:
                    self._commit(batch)
            except StalePosition as exc:
                log.warning("%s; re-reading positions", exc)
                self._resync()
                return
            except _TRANSIENT as exc:
                attempt += 1
                stats.retried = True
                self._pause(attempt, f"batch failed ({exc})")
                continue
            except _HandlerFailed as failure:
                stats.retried = True
                if failure.index is None and len(batch) > 1:
                    limit = 1  # the view refused the batch's rows: find the culprit alone
                else:
                    # Commit what went well before the failure, then retry it alone.
                    limit, culprit = failure.index or 0, failure
                continue
            stats.applied += len(batch)
            pending = pending[len(batch) :]
            if culprit is not None and limit > 0:
                limit = 0  # the messages before the culprit committed: it is next
            else:
                limit, culprit = len(pending), None
            attempt = 0

    def _retry_alone(self, message: LogMessage, failure: _HandlerFailed) -> None:
        """Retry one failing message with backoff; past the limit it is poison."""
        retryable = not isinstance(failure.error, DecodeError)
        limit = type(self.consumer).max_retries if retryable else 0
        error = failure.error
        attempt = 0
        while attempt < limit:
            attempt += 1
            self._pause(
                attempt, f"handler failed on {message.topic_partition}@{message.offset}: {error}"
            )
            try:
                self._commit([message])
                return
            except _HandlerFailed as again:
                error = again.error
            except _TRANSIENT as exc:
                error = exc
        self._poison(message, error)

    def _pause(self, attempt: int, reason: str) -> None:
        delay = min(self.retry_backoff * 2 ** (attempt - 1), 10.0)
        log.warning("%s %s: %s; retrying in %.1f s", self.kind, self.name, reason, delay)
        time.sleep(delay)

    def _poison(self, message: LogMessage, error: BaseException) -> None:
        """A message failed for good: park it, then stop or go on (`on_failure`)."""
        record = message.record
        poison = PoisonEvent(
            self.name,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            event_type=record.event_type if record else None,
            event_id=record.event_id if record else None,
            error=error,
        )
        text = f"{type(error).__name__}: {error}"
        if type(self.consumer).on_failure == "park":
            # Park it and move past it in one transaction; its stream's later
            # events will wait behind it.
            with self._transaction() as conn:
                deadletters.park(conn, self.key, message, text, deadletters.PARKED)
                advanced = positions.advance(conn, self.key, self._moves([message]))
            self._positions.update(advanced)
            log.error("%s; parked it, its stream waits behind it", poison)
            return
        with self._transaction() as conn:
            # A worker whose position moved on (a rebuild swapped in another
            # version, another worker took over) has lost the partition: it
            # re-reads its positions rather than stopping the projection.
            tp = message.topic_partition
            positions.check_current(conn, self.key, tp, self._positions[tp])
            deadletters.clear_stopped(
                conn, self.key, message.topic, message.partition, message.offset
            )
            deadletters.park(conn, self.key, message, text, deadletters.STOPPED)
            positions.set_status(conn, self.key, "failed", error=str(poison))
        raise poison from error

    # -- one transaction -------------------------------------------------------

    def _commit(self, messages: Sequence[LogMessage]) -> None:
        try:
            self._commit_batch(messages)
        except (OperationalError, InterfaceError) as exc:
            failure = _classified(exc)
            if failure is exc:
                raise  # transient: the batch simply runs again
            raise failure from exc

    def _commit_batch(self, messages: Sequence[LogMessage]) -> None:
        batch = self._fold_batch(messages)
        try:
            self._finish_batch(batch)
        except BaseException:
            self.view.rollback()
            raise
        self._batch_done(batch)

    def _fold_batch(
        self,
        messages: Sequence[LogMessage],
        decoded: Sequence[Event | DecodeError | None] | None = None,
    ) -> _OpenBatch:
        """Open the batch's transaction and fold the batch into the view (nothing
        written yet); on failure the transaction is rolled back."""
        moves = self._moves(messages)
        stack = ExitStack()
        conn = stack.enter_context(self._transaction())
        reaction: Reaction | None = None
        try:
            self.view.begin(conn)
            if self.store is not None:
                reaction = Reaction(self.store, conn, self.view, owner=self.key)
            blocked = self._blocked(conn)
            if decoded is None:
                decoded = self._decode_ahead(messages)
            parked = self._fold(messages, reaction, blocked, decoded)
            for message in parked:
                deadletters.park(
                    conn,
                    self.key,
                    message,
                    "waits behind a parked event of its stream",
                    deadletters.BLOCKED,
                )
            if self._stopped_on:
                moved = {(tp.topic, tp.partition): m[1] for tp, m in moves.items()}
                deadletters.resolve_stopped(conn, self.key, moved)
        except BaseException as exc:
            self.view.rollback()
            stack.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return _OpenBatch(messages, moves, stack, conn, reaction)

    def _finish_batch(self, batch: _OpenBatch) -> None:
        """Write a folded batch's rows and positions and commit (or roll back).

        Touches nothing the next poll uses, so it may run on the committer
        thread while the next batch is read.
        """
        reaction = batch.reaction
        try:
            with batch.transaction:
                try:
                    self.view.flush()
                except _DETERMINISTIC as exc:
                    # The view refused the batch's rows (a constraint, bad data).
                    raise _HandlerFailed(None, exc) from exc
                if reaction is not None:
                    reaction.flush()
                batch.advanced = positions.advance(batch.conn, self.key, batch.moves)
        except IntegrityError as exc:
            if reaction is not None and self.store is not None:
                # Appends are serialised (the commit-order lock), so no other
                # writer ran during the batch: the conflict is the batch's own
                # doing, and the whole batch again would conflict again.
                conflict = self.store.conflict_error(reaction.pending_records(), exc)
                raise _HandlerFailed(None, conflict) from exc
            raise

    def _batch_done(self, batch: _OpenBatch) -> None:
        """The batch committed: the view's cache and our positions move on."""
        self.view.commit()
        self._positions.update(batch.advanced)
        self.applied += len(batch.messages)

    def _blocked(self, conn: Connection) -> set[str]:
        """Streams with parked events (park mode), read under the replay lock."""
        if type(self.consumer).on_failure != "park":
            return set()
        deadletters.lock(conn, self.key)
        return deadletters.blocked_streams(conn, self.key)

    def _decode_ahead(self, messages: Sequence[LogMessage]) -> list[Event | DecodeError | None]:
        """Each message's event, or why it has none (None: not wanted, or no
        record), decoded before the batch's turn to fold comes."""
        wanted_types = self._wanted_types
        decode = self.codec.decode
        out: list[Event | DecodeError | None] = []
        for message in messages:
            record = message.record
            if record is None:
                out.append(None)  # `_fold` raises the message's own error
                continue
            wanted = wanted_types.get(record.event_type)
            if not (self._wanted(record.event_type) if wanted is None else wanted):
                out.append(None)
                continue
            try:
                out.append(decode(record))
            except DecodeError as exc:
                out.append(exc)
        return out

    def _fold(
        self,
        messages: Sequence[LogMessage],
        reaction: Reaction | None,
        blocked: set[str],
        decoded: Sequence[Event | DecodeError | None],
    ) -> list[LogMessage]:
        """Apply each message's handler; return the messages parked behind others.

        `decoded`: the messages' events, from `_decode_ahead`.
        """
        # The loop runs for every event of a rebuild: look things up once.
        handlers = _Handlers(type(self.consumer).handler_for)
        consumer, view = self.consumer, self.view
        parked: list[LogMessage] = []
        for index, message in enumerate(messages):
            record = message.record
            if record is None:
                raise _HandlerFailed(index, message.error or DecodeError("empty message"))
            if blocked and record.stream_id in blocked:
                parked.append(message)
                continue
            event = decoded[index]
            if event is None:
                continue
            if isinstance(event, DecodeError):
                located = event.at(
                    topic=message.topic, partition=message.partition, offset=message.offset
                )
                raise _HandlerFailed(index, located) from event
            handler = handlers[type(event)]
            if handler is None:
                continue
            try:
                if reaction is None:
                    handler(consumer, event, view)
                else:
                    self.handle(handler, event, reaction)
            except (OperationalError, InterfaceError) as exc:
                if transient(exc):
                    raise  # the database's trouble (a lost connection, a deadlock), not the event's
                raise _HandlerFailed(index, exc) from exc
            except Exception as exc:
                raise _HandlerFailed(index, exc) from exc
        return parked

    def handle(self, handler: Callable[..., None], event: Event, reaction: Reaction | None) -> None:
        """Call a handler: a reactor's with the reaction, caused by the event;
        a projection's with the view."""
        if reaction is None:
            handler(self.consumer, event, self.view)
            return
        reaction.cause = event
        with caused_by(event):
            handler(self.consumer, event, reaction)

    def _wanted(self, event_type: str) -> bool:
        """Whether events of this type have a handler: others are not even decoded.

        A type this process has no class for is skipped too (a tolerant
        reader: the producing context may have added it since).
        """
        wanted = self._wanted_types.get(event_type)
        if wanted is None:
            cls = self.codec.registry.resolve(event_type)
            wanted = cls is not None and type(self.consumer).handler_for(cls) is not None
            if cls is None:
                log.warning(
                    "%s %s skips events of unknown type %r", self.kind, self.name, event_type
                )
            self._wanted_types[event_type] = wanted
        return wanted

    def _moves(
        self, messages: Sequence[LogMessage]
    ) -> dict[TopicPartition, tuple[Position, int, int]]:
        # One pass over the batch: each partition's next offset and highest position.
        ends: dict[tuple[str, int], tuple[int, int]] = {}
        for topic, partition, offset, record, _ in messages:
            position = record.position if record is not None else 0
            end = ends.get((topic, partition))
            if end is not None and end[1] > position:
                position = end[1]
            ends[topic, partition] = (offset + 1, position)
        moves: dict[TopicPartition, tuple[Position, int, int]] = {}
        for (topic, partition), (offset, position) in ends.items():
            tp = TopicPartition(topic, partition)
            seen = self._positions[tp]
            moves[tp] = (seen, offset, max(seen.last_position, position))
        return moves

    def _resync(self) -> None:
        """Our positions are stale: read them again and move the consumer there.

        If a rebuild swapped in another version of the projection, this
        (older) code must not write to it: stop.
        """
        self._resyncs += 1
        self.view.clear_cache()
        with self._transaction() as conn:
            if self.check_version:
                stored = positions.stored_version(conn, self.key)
                declared = type(self.consumer).version
                if stored is not None and stored != declared:
                    raise ProjectionVersionMismatch(self.name, stored, declared)
            loaded = positions.load(conn, self.key, list(self._positions))
        self._positions.update(loaded)
        for tp, position in loaded.items():
            self.log.seek(tp, position.start)

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        if self.store is not None:
            with self.store.transaction() as conn:
                yield conn
        else:
            with write_connection(self.engine) as conn, conn.begin():
                yield conn

    # -- dead letters and deadlines -------------------------------------------

    def replay_parked(self) -> tuple[int, int]:
        """Apply parked events again, stream by stream; return `(replayed, still_parked)`."""
        return upkeep.replay_parked(self)

    def fire_deadlines(self, now: datetime | None = None) -> int:
        """Run this reactor's deadlines that are due; return how many ran."""
        return upkeep.fire_deadlines(self, now)

    def start_tables(self) -> None:
        """Create the view and framework tables (without subscribing to the log)."""
        upgrade_schema(self.engine)
        with self._transaction() as conn:
            create_missing(conn, self.tables)

    def close(self) -> None:
        self.log.close()


def _classified(exc: BaseException) -> BaseException:
    """A database error the same batch would hit again becomes the batch's failure."""
    if isinstance(exc, (OperationalError, InterfaceError)) and not transient(exc):
        failure = _HandlerFailed(None, exc)
        failure.__cause__ = exc
        return failure
    return exc


def _require(engine: Engine | None) -> Engine:
    if engine is None:
        raise EventSourceError("a projection worker needs the engine of its view database")
    return engine


def _describe(loaded: Mapping[TopicPartition, Position]) -> str:
    return ", ".join(f"{tp}@{p.offset}" for tp, p in sorted(loaded.items())) or "no partitions"


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
