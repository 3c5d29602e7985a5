"""The worker: one thread that polls batches, folds them and commits them.

The worker's thread owns everything the consumer touches: its view, its
connections, its positions. Its jobs live in modules of their own, wired
here: `assignment` (partitions and positions), `batch` (decode, fold,
write), `failures` (retry, culprit, poison), `pipeline` (a commit behind
the next poll) and `upkeep` (deadlines and parked events). Other threads
never call into those: they queue work in the worker's `Inbox`, which the
worker runs between two batches.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Engine, Table

from eventsource.bus.base import LogConsumer, TopicPartition
from eventsource.errors import PoisonEvent, ProjectionVersionMismatch
from eventsource.events.codec import EventCodec
from eventsource.identity import Identity, current_consumer
from eventsource.observability.metrics import WorkerMetrics
from eventsource.projections import deadletters, deadlines, members, positions, upkeep
from eventsource.projections.assignment import Assignment
from eventsource.projections.base import Consumer, Reactor
from eventsource.projections.batch import Batches, BatchStats
from eventsource.projections.context import WorkerContext
from eventsource.projections.failures import FailurePolicy
from eventsource.projections.inbox import Inbox
from eventsource.projections.members import HEARTBEAT_SECONDS
from eventsource.projections.pipeline import CommitPipeline
from eventsource.projections.positions import Position
from eventsource.projections.sizing import BatchSizer
from eventsource.projections.tables import create_missing
from eventsource.retry import Outage, RetryPolicy, Stopped, is_transient
from eventsource.store.engine import read_transaction
from eventsource.store.eventstore import EventStore
from eventsource.store.migrate import upgrade_schema
from eventsource.tuning import SWITCH_INTERVAL

log = logging.getLogger(__name__)

T = TypeVar("T")

# Events per batch at most, unless the caller says; within that, a batch is
# about a quarter of a second of work (`sizing`). A projection's batch is one
# transaction of the view, whose commit, positions and statements are paid
# once for all of its events: 20,000 events of a fast fold are about that
# quarter of a second. A reactor's batch holds the store's commit-order
# lock, which the application's own saves wait for: it stays small.
PROJECTION_BATCH = 20_000
REACTOR_BATCH = 1000
# Below this many events a batch, a projection into PostgreSQL commits on
# its own thread only under a short switch interval (`_commits_behind`).
BEHIND_AT_DEFAULT_SWITCH = 5000

__all__ = ["BatchStats", "Worker"]


class Worker:
    """Runs one projection or reactor against a log.

    ::

        worker = Worker(MyProjection(), log, engine=views_engine)
        worker.run(stop=stop_event)

    Projections write to `engine` (their context's database). Reactors write
    to `store`, whose database also holds their positions, so their new
    events and positions commit together. `start_at` overrides the
    consumer's own `start_at` (a rebuild starts at the beginning).
    `batch_size` caps the events of one transaction (by default 20,000 for a
    projection, 1,000 for a reactor); a batch is what the log has ready, so
    at a trickle each event is its own batch, and about a quarter of a
    second of work at most, so a slow handler gets small batches and the
    worker still beats its heartbeat.

    While `run` runs, the worker's thread is the only one that touches its
    view and connections: `fire_deadlines` and `replay_parked` called from
    another thread are handed to it and run between two batches.
    """

    def __init__(
        self,
        consumer: Consumer,
        log_consumer: LogConsumer,
        *,
        engine: Engine | None = None,
        store: EventStore | None = None,
        codec: EventCodec | None = None,
        batch_size: int | None = None,
        poll_timeout: float = 0.2,
        retry_backoff: float = 0.2,
        positions_key: str | None = None,
        physical: Mapping[str, Table] | None = None,
        check_version: bool = True,
        cache_rows: int | None = None,
        start_at: str | None = None,
        identity: Identity | None = None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.context = WorkerContext.build(
            consumer,
            engine=engine,
            store=store,
            codec=codec,
            key=positions_key,
            physical=physical,
            cache_rows=cache_rows,
        )
        self.consumer = consumer
        self.log = log_consumer
        self.store = store
        self.engine: Engine = self.context.engine
        self.codec = self.context.codec
        self.view = self.context.view
        if batch_size is None:
            batch_size = REACTOR_BATCH if isinstance(consumer, Reactor) else PROJECTION_BATCH
        self.sizer = BatchSizer(batch_size)
        self.poll_timeout = poll_timeout
        self.name = self.context.name
        self.key = self.context.key
        self.check_version = check_version
        self.identity = identity or Identity.of_this_process()
        self.metrics = metrics
        self.heartbeat_seconds = heartbeat_seconds
        self._beaten = 0.0
        self.last_loop = 0.0  # monotonic time the loop last went round (health checks)
        self._held: dict[TopicPartition, Position] = {}
        self._stop = threading.Event()
        # One outage at a time: the database or the broker is away. Every
        # call of the loop, the log's callbacks and upkeep waits it out here.
        self.outage = Outage(f"{self.kind} {self.name}", log)
        self.retry = RetryPolicy(self.outage.what, stop=self._stop, outage=self.outage)
        self.batches = Batches(self.context, self._held)
        self.assignment = Assignment(
            self.context,
            log_consumer,
            self._held,
            check_version=check_version,
            start_at=start_at or type(consumer).start_at,
            retry=self.retry,
        )
        self.failures = FailurePolicy(
            self.batches, self.assignment, retry_backoff=retry_backoff, retry=self.retry
        )
        self._pipeline: CommitPipeline | None = None
        self.assignment.before_change = self._settle_quietly
        self.failures.on_error = self._note_error
        self._inbox = Inbox()
        # Held by whichever thread acts as the owner: `run` for its whole
        # length, or a direct call of upkeep while nothing runs.
        self._ownership = threading.RLock()
        self._running = False
        self._started = False

    @property
    def batch_size(self) -> int:
        """The most events one batch holds (set it to change it)."""
        return self.sizer.cap

    @batch_size.setter
    def batch_size(self, cap: int) -> None:
        self.sizer = BatchSizer(cap)

    @property
    def running(self) -> bool:
        """Whether `run` is running (on some thread)."""
        return self._running

    @property
    def kind(self) -> str:
        """`projection` or `reactor`."""
        return self.context.kind

    @property
    def applied(self) -> int:
        """Messages applied since the worker was made."""
        return self.batches.applied

    @property
    def positions(self) -> dict[TopicPartition, Position]:
        """The positions this worker holds (as of its last commit)."""
        return dict(self._held)

    @property
    def tables(self) -> list[Table]:
        """The tables written: the declared ones, or their rebuild copies."""
        return self.context.tables

    # -- start-up --------------------------------------------------------------

    def start(self) -> None:
        """Check the class, prepare tables and positions, and subscribe to the log."""
        if self._started:
            return
        cls = type(self.consumer)
        cls.check()
        self.start_tables()
        with self.context.transaction() as conn:
            stored = positions.register(conn, self.key, self.kind, cls.version)
            if self.check_version and stored != cls.version:
                raise ProjectionVersionMismatch(self.name, stored, cls.version)
            positions.set_status(conn, self.key, "running", clear_error=True)
            self.batches.stopped_on = deadletters.has_stopped(conn, self.key)
            stale = timedelta(seconds=self.heartbeat_seconds * members.STALE_AFTER * 10)
            members.prune(conn, self.key, older_than=stale)
            # Beat with the status: "running" is never seen without this worker's row.
            members.beat(conn, self.key, self.identity, partitions=[], applied=self.applied)
        self.consumer.setup()
        self.log.subscribe(list(cls.topics), self.assignment.assigned, self.assignment.revoked)
        self._started = True

    def start_tables(self) -> None:
        """Create the view and framework tables (without subscribing to the log)."""
        upgrade_schema(self.engine, "runtime", *(("store",) if self.store is not None else ()))
        with self.context.transaction() as conn:
            create_missing(conn, self.tables)

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
        handler keeps failing and the consumer's `on_failure` is "stop"; any
        error that stops the worker is recorded as its status, `failed`.

        A projection writing PostgreSQL commits each batch on a second
        thread while the next batch is read, so the database's work overlaps
        the log's. A batch is folded only once the one before it has
        committed, and `run` returns only after the last one has.
        """
        stop = stop or threading.Event()
        with self._ownership:
            self._begin_run(stop)
            before = self.applied
            if self.metrics is not None:
                self.metrics.restarts.labels(self.key).inc()
            try:
                self.retry.call(self.start)
                if self._commits_behind():
                    self._pipeline = CommitPipeline(self.batches, self.failures)
                self._loop(stop, until_caught_up, on_batch)
                self._settle(reapply=True)
                self._inbox.drain()
            except Stopped:
                pass  # asked to stop while the database or broker was away
            except BaseException as exc:
                self._record_failure(exc)
                raise
            finally:
                self._end_run()
            self._record_status("stopped")
            self._leave()
            return self.applied - before

    def _loop(
        self,
        stop: threading.Event,
        until_caught_up: bool,
        on_batch: Callable[[Worker, BatchStats], None] | None,
    ) -> None:
        attempt = 0
        while not stop.is_set():
            self._inbox.drain()
            started = self.last_loop = time.monotonic()
            try:
                stats = self._step_ahead() if self._pipeline else self._step()
                self._measure(stats, time.monotonic() - started)
                self._beat()
            except Exception as exc:
                # Polling, an idle check, a rebalance, the heartbeat: the database
                # or broker is away. Wait it out and go on where we were (what a
                # batch committed stays committed; the rest is read again).
                if not is_transient(exc):
                    raise
                attempt += 1
                self._note_error()
                self.retry.failed(exc, attempt)
                continue
            if attempt:
                attempt = 0
                self.retry.recovered()
            if on_batch is not None:
                on_batch(self, stats)
            if stats.messages == 0 and until_caught_up and self.log.caught_up():
                return

    def step(self) -> BatchStats:
        """Poll one batch and apply it; returns what happened."""
        with self._ownership:
            self.start()
            return self._step()

    def _begin_run(self, stop: threading.Event) -> None:
        current_consumer.set(self.name)  # for this thread's log lines
        self.last_loop = time.monotonic()  # starting counts as going round
        self.retry.stop = stop
        self._running = True
        self._inbox.open()

    def _end_run(self) -> None:
        self._inbox.close()
        try:
            self._inbox.drain()  # what arrived before the close: the callers wait for it
        finally:
            pipeline, self._pipeline = self._pipeline, None
            if pipeline is not None:
                pipeline.close()
            self.retry.stop = self._stop
            self._running = False

    def _commits_behind(self) -> bool:
        """Whether `run` commits each batch on the commit pipeline's thread.

        Only a projection's, and only into PostgreSQL, whose work runs in its
        own process. SQLite works inside this one: a second thread writing it
        made the SQLite rebuild 22% slower (Python's sqlite3 gives up the GIL
        at every row it steps), and still twice as slow with every read and
        write one statement. A reactor's batch holds the store's commit-order
        lock and is usually small: it stays on one thread.

        The committer waits for the GIL after each of its few statements, up
        to a switch interval each time. Under a short one
        (`EVENTSOURCE_TUNE_INTERPRETER`'s 1 ms) that is always hidden; under
        CPython's default 5 ms only behind batches of 5,000 events or more,
        which take tens of milliseconds to fold: behind smaller ones one
        thread was the faster.
        """
        return (
            self.engine.dialect.name == "postgresql"
            and not isinstance(self.consumer, Reactor)
            and (
                sys.getswitchinterval() <= SWITCH_INTERVAL
                or self.batch_size >= BEHIND_AT_DEFAULT_SWITCH
            )
        )

    def _step(self) -> BatchStats:
        self._settle(reapply=True)
        messages = self.log.poll(self.sizer.size, self.poll_timeout)
        stats = BatchStats(messages=len(messages))
        if messages:
            polled = time.monotonic()
            self.failures.apply(messages, stats)
            self.sizer.took(len(messages), time.monotonic() - polled)
        else:
            self.assignment.check_when_idle()
        return stats

    def _step_ahead(self) -> BatchStats:
        """`_step`, but the batch commits on the pipeline's thread while the next is read."""
        pipeline = self._pipeline
        assert pipeline is not None
        messages = self.log.poll(self.sizer.size, self.poll_timeout)
        polled = time.monotonic()
        stats = BatchStats(messages=len(messages))
        if not pipeline.settle(reapply=True):
            return stats  # positions were re-read: what was polled is stale
        if not messages:
            self.assignment.check_when_idle()
            return stats
        pending = self.batches.owned(messages)
        if not pending:
            return stats
        try:
            batch = self.batches.fold(pending)
        except Exception as exc:
            # The synchronous path sorts it out: retries, the culprit, poison.
            self.failures.apply(pending, stats, failed=exc)
            return stats
        pipeline.submit(batch, stats)
        # Its commit overlaps the next poll; waiting for the one before is counted.
        self.sizer.took(len(pending), time.monotonic() - polled)
        return stats

    def _settle(self, *, reapply: bool) -> bool:
        return self._pipeline.settle(reapply=reapply) if self._pipeline is not None else True

    def _settle_quietly(self) -> None:
        self._settle(reapply=False)

    def _measure(self, stats: BatchStats, seconds: float) -> None:
        metrics = self.metrics
        if metrics is None or not stats.messages:
            return
        metrics.batches.labels(self.key).inc()
        metrics.applied.labels(self.key).inc(stats.applied)
        metrics.batch_seconds.labels(self.key).observe(seconds)

    def _note_error(self) -> None:
        if self.metrics is not None:
            self.metrics.last_error.labels(self.key).set_to_current_time()

    def _beat(self) -> None:
        """Refresh this worker's heartbeat row (and its gauges) when it is due
        (between batches, on this thread: a worker stuck in a batch stops beating)."""
        now = time.monotonic()
        if now - self._beaten < self.heartbeat_seconds:
            return
        self._beaten = now
        if self.metrics is not None:
            try:
                self._refresh_gauges(self.metrics)
            except Exception as exc:  # gauges wait for the next beat; work goes on
                log.debug("%s %s: gauges not refreshed: %s", self.kind, self.name, exc)
        outage = self.waiting_on()
        with self.context.transaction() as conn:
            members.beat(
                conn,
                self.key,
                self.identity,
                partitions=list(self._held),
                applied=self.applied,
                retrying_since=outage.since if outage else None,
                retry_reason=outage.reason if outage else None,
            )

    def waiting_on(self) -> Outage | None:
        """The outage this worker waits out (its database's, or its log's
        broker's), or None while all is well."""
        if self.outage.active:
            return self.outage
        log_outage: Outage | None = getattr(self.log, "outage", None)
        return log_outage if log_outage is not None and log_outage.active else None

    def _refresh_gauges(self, metrics: WorkerMetrics) -> None:
        """Lag, dead letters and deadlines, read at most once a heartbeat."""
        key = self.key
        behind = sum(lag.lag for lag in self.log.lag().values())
        metrics.lag_messages.labels(key).set(behind)
        occurred = self.batches.last_occurred_at
        age = (datetime.now(UTC) - occurred).total_seconds() if occurred and behind else 0.0
        metrics.lag_seconds.labels(key).set(max(0.0, age))
        metrics.retrying.labels(key).set(1 if self.waiting_on() is not None else 0)
        with read_transaction(self.engine) as conn:
            letters = deadletters.counts(conn, key)
            pending = len(deadlines.pending(conn, key)) if self.store is not None else 0
        for status in deadletters.OPEN:
            metrics.dead_letters.labels(key, status).set(letters.get(status, 0))
        if self.store is not None:
            metrics.deadlines_pending.labels(key).set(pending)

    def _leave(self) -> None:
        try:
            with self.context.transaction() as conn:
                members.leave(conn, self.key, self.identity)
        except Exception as failure:
            log.warning("%s %s: cannot remove its heartbeat: %s", self.kind, self.name, failure)

    def _record_failure(self, exc: BaseException) -> None:
        """Say in the status row why the worker stopped, and leave."""
        if not isinstance(exc, Exception):
            return  # an interrupt: the process is going away anyway
        if not isinstance(exc, ProjectionVersionMismatch | PoisonEvent):
            # (A poison event recorded itself; another version's row is not ours.)
            self._record_status("failed", error=f"{type(exc).__name__}: {exc}")
        self._leave()

    def _record_status(self, status: str, *, error: str | None = None) -> None:
        """Best effort, one attempt: the database may be what failed, and a
        stopping worker must not wait for it."""
        try:
            with self.context.transaction() as conn:
                positions.set_status(conn, self.key, status, error=error)
        except Exception as failure:
            log.warning(
                "%s %s: cannot record its status %r: %s", self.kind, self.name, status, failure
            )

    # -- upkeep, on the owner's thread -----------------------------------------

    def replay_parked(self) -> tuple[int, int]:
        """Apply dead letters again (the events it stopped on, and parked
        streams in order); return `(replayed, still_open)`."""

        def replay() -> tuple[int, int]:
            self.start_tables()
            return upkeep.replay(self.context)

        return self._as_owner(replay)

    def skip(self, letter_id: int, *, reason: str, by: str | None = None) -> str:
        """Never apply dead letter `letter_id`'s event: record why and by whom,
        and let the worker (or the event's stream) go on. Returns what was done.

        ::

            worker.skip(17, reason="order 42 was deleted by hand in 2019", by="ada")
        """
        return self._as_owner(lambda: upkeep.skip(self.context, letter_id, reason=reason, by=by))

    def fire_deadlines(self, now: datetime | None = None) -> int:
        """Run this reactor's deadlines that are due; return how many ran."""
        return self._as_owner(lambda: upkeep.fire_deadlines(self.context, now))

    def request_deadlines(self) -> Future[int] | None:
        """Ask the running worker to fire its due deadlines soon (a scheduler's
        tick); None if it is not running. Never runs them on this thread."""
        return self._inbox.submit(self._fire_due, key="deadlines")

    def request_lag_report(self) -> None:
        """Ask the running worker to log its lag soon (a scheduler's tick)."""
        self._inbox.submit(self._report_lag, key="lag")

    def _report_lag(self) -> None:
        try:
            lags = self.log.lag()
        except Exception as exc:  # the broker is away: the outage says so already
            log.debug("%s %s: no lag report: %s", self.kind, self.name, exc)
            return
        total = sum(p.lag for p in lags.values())
        log.info("%s %s: lag %d over %d partition(s)", self.kind, self.name, total, len(lags))

    def _fire_due(self) -> int:
        try:
            fired = upkeep.fire_deadlines(self.context)
        except Exception as exc:
            if not is_transient(exc):
                raise
            self.outage.begin(exc)  # the next tick tries again
            return 0
        self.outage.end()
        if self.metrics is not None and fired:
            self.metrics.deadlines_fired.labels(self.key).inc(fired)
        return fired

    def _as_owner(self, job: Callable[[], T]) -> T:
        """Run `job` as the owner: here if nothing runs, else on the worker's thread."""
        while True:
            if self._ownership.acquire(timeout=0.05):
                try:
                    return job()
                finally:
                    self._ownership.release()
            if self._running:
                future = self._inbox.submit(job)
                if future is not None:
                    result: Any = future.result()
                    return result  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close the worker's log consumer."""
        self.log.close()
