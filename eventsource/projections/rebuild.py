"""Rebuild a projection from offset zero beside the live view, then swap.

1. Fresh tables `<table>__rebuild` are created next to the live ones, with
   their own positions (`<name>#rebuild`), and folded from offset zero.
   The live view keeps serving reads, and a live worker keeps updating it.
2. When the rebuild has caught up (writers need not pause: it is caught up
   once it has read to an end of the log it noted, with less than a batch
   left), one transaction drops the live tables, renames the rebuilt ones
   into their place and hands their positions to the projection. Readers
   see the old view or the new one, never an empty or half-built one. A
   live worker's next commit is rejected (its position revisions changed);
   it re-reads its positions and carries on from the rebuild's, or stops if
   the rebuild shipped a new `version`.
3. A rebuild killed midway resumes from its own positions when run again
   (with the same projection version), or starts over with `restart=True`;
   the live view is untouched until the swap.

Declaring a new `version` on a projection and rebuilding it is how a change
to its tables or handlers ships.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, MetaData, Table, delete, inspect, select, text
from sqlalchemy.sql.elements import quoted_name

from eventsource.bus.base import LogConsumer, PartitionLag, TopicPartition
from eventsource.errors import BusError, ConfigurationError
from eventsource.events.codec import EventCodec
from eventsource.projections import deadletters, positions
from eventsource.projections.base import Consumer, Reactor
from eventsource.projections.tables import dead_letters, projections
from eventsource.projections.tables import positions as positions_table
from eventsource.projections.worker import PROJECTION_BATCH, BatchStats, Worker
from eventsource.store.engine import write_connection
from eventsource.store.eventstore import EventStore
from eventsource.store.migrate import upgrade_schema

log = logging.getLogger(__name__)

SUFFIX = "__rebuild"


def rebuild_key(name: str) -> str:
    return f"{name}#rebuild"


@dataclass
class RebuildProgress:
    done: int
    lag: int
    elapsed: float

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def total(self) -> int:
        return self.done + self.lag


ProgressCallback = Callable[[RebuildProgress], None]


def shadow_tables(cls: type[Consumer]) -> dict[str, Table]:
    """Copies of the projection's tables under rebuild names (indexes renamed too)."""
    shadows: dict[str, Table] = {}
    for table in cls.tables:
        metadata = MetaData(naming_convention=table.metadata.naming_convention)
        copy = table.to_metadata(metadata, name=table.name + SUFFIX)
        for index in copy.indexes:
            if index.name and SUFFIX not in str(index.name):
                index.name = quoted_name(f"{index.name}{SUFFIX}", None)
        shadows[table.name] = copy
    return shadows


def rebuild(
    cls: type[Consumer],
    log_consumer: LogConsumer,
    *,
    engine: Engine | None = None,
    store: EventStore | None = None,
    batch_size: int = PROJECTION_BATCH,
    restart: bool = False,
    stop: threading.Event | None = None,
    progress: ProgressCallback | None = None,
    before_swap: Callable[[], None] | None = None,
    on_batch: Callable[[], None] | None = None,
    codec: EventCodec | None = None,
) -> int:
    """Rebuild `cls`'s views from offset zero and swap them in; return events applied.

    Returns without swapping (0 swapped) if `stop` is set first: run it again
    to resume.
    """
    target = engine if engine is not None else store.engine if store is not None else None
    if target is None:
        raise ConfigurationError("rebuild needs the engine of the projection's database")
    if issubclass(cls, Reactor):
        raise ConfigurationError(
            f"{cls.name} is a reactor: replaying it would repeat its reactions; only"
            " projections are rebuilt"
        )
    cls.check()
    missing = [topic for topic in cls.topics if log_consumer.partitions(topic) == 0]
    if missing:
        # A misspelled topic (or one nothing was relayed to yet) would
        # rebuild an empty view and swap it in over the live one.
        raise ConfigurationError(
            f"cannot rebuild {cls.name}: topic(s) {', '.join(missing)} do not exist on the log"
            " (nothing relayed to them yet, or a misspelled name)"
        )
    upgrade_schema(target)
    key = rebuild_key(cls.name)
    shadows = shadow_tables(cls)
    _prepare(target, cls, key, shadows, restart=restart)
    worker = Worker(
        cls(),
        log_consumer,
        engine=target if store is None else None,
        store=store,
        batch_size=batch_size,
        positions_key=key,
        physical=shadows,
        codec=codec,
        check_version=False,
        start_at="beginning",
        # The last poll of a rebuild finds the log's end: wait there briefly.
        poll_timeout=0.05,
    )
    stop = stop or threading.Event()
    started = time.monotonic()
    last_report = 0.0
    finished = _EitherEvent(stop)
    end_of_log = _EndOfLog(log_consumer, batch_size)

    def report(w: Worker, stats: BatchStats) -> None:
        nonlocal last_report
        if on_batch is not None:
            on_batch()
        if stop.is_set() or end_of_log.reached(stats):
            finished.set()
        now = time.monotonic()
        if progress is None or (now - last_report < 0.5 and stats.messages):
            return
        last_report = now
        try:
            lag = _lag(log_consumer)
        except BusError:
            return  # the next report will tell
        progress(RebuildProgress(w.applied, lag, now - started))

    worker.run(stop=finished, on_batch=report)
    if stop.is_set():
        if progress is not None:  # the report ends with every event applied
            try:
                lag = _lag(log_consumer)
            except BusError:
                lag = 0
            progress(RebuildProgress(worker.applied, lag, time.monotonic() - started))
        log.info(
            "rebuild of %s interrupted after %d events; run it again to resume",
            cls.name,
            worker.applied,
        )
        return worker.applied
    if progress is not None:
        progress(RebuildProgress(worker.applied, 0, time.monotonic() - started))
    if before_swap is not None:
        before_swap()
    swap(target, cls, shadows)
    log.info("rebuilt %s from offset zero (%d events) and swapped it in", cls.name, worker.applied)
    return worker.applied


class _EitherEvent(threading.Event):
    """Set when the rebuild reaches the end of the log, or when the caller's
    `stop` is: a worker waiting out an outage sees a signal at once."""

    def __init__(self, other: threading.Event) -> None:
        super().__init__()
        self.other = other

    def is_set(self) -> bool:
        return super().is_set() or self.other.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if left <= 0:
                return False
            super().wait(left)
        return True


class _EndOfLog:
    """Decides when a rebuild is close enough to the end of the log to swap.

    Writers need never pause, so the end may never be reached exactly. The
    rebuild notes where the log ends the first time a poll does not fill a
    batch; once it has read that far it notes the end again, until it
    reaches a noted end with less than a batch left. The live worker applies
    the rest after the swap, from the rebuild's positions.

    The end is the log's own (Kafka's high watermark), never a consumer's
    end-of-partition signal alone: under `read_committed` that signal can
    come at the last stable offset, before a transaction that has just
    committed becomes readable.
    """

    # Reading the end of every partition is a round trip per partition on
    # Kafka, whose polls often return short batches: at most this often.
    EVERY = 0.25

    def __init__(self, consumer: LogConsumer, batch_size: int) -> None:
        self.consumer = consumer
        self.batch_size = batch_size
        self.target: dict[TopicPartition, int] | None = None
        self.checked = 0.0

    def reached(self, stats: BatchStats) -> bool:
        if stats.messages >= self.batch_size or not self.consumer.assignment():
            return False
        now = time.monotonic()
        if stats.messages and now - self.checked < self.EVERY:
            return False
        self.checked = now
        try:
            lags = self.consumer.lag()
        except BusError as exc:  # the broker is away for a moment: look again later
            log.warning("rebuild cannot read the end of the log yet: %s", exc)
            return False
        return self._close_enough(lags)

    def _close_enough(self, lags: dict[TopicPartition, PartitionLag]) -> bool:
        behind = sum(lag.lag for lag in lags.values())
        target = self.target
        at_target = target is not None and all(
            tp in target and lag.position >= target[tp] for tp, lag in lags.items()
        )
        # At the end of every partition right now, or at the noted end and close.
        if behind == 0 or (at_target and behind < self.batch_size):
            return True
        if target is None or at_target:
            self.target = {tp: lag.end for tp, lag in lags.items()}
        return False


def _lag(consumer: LogConsumer) -> int:
    lags: dict[TopicPartition, PartitionLag] = consumer.lag()
    return sum(p.lag for p in lags.values())


def _prepare(
    engine: Engine, cls: type[Consumer], key: str, shadows: dict[str, Table], *, restart: bool
) -> None:
    with write_connection(engine) as conn, conn.begin():
        stored = conn.execute(
            select(projections.c.version).where(projections.c.name == key)
        ).scalar_one_or_none()
        existing = set(inspect(conn).get_table_names())
        resumable = (
            not restart
            and stored == cls.version
            and all(t.name in existing for t in shadows.values())
        )
        if resumable:
            log.info("resuming the rebuild of %s", cls.name)
            return
        for table in shadows.values():
            table.drop(conn, checkfirst=True)
        positions.reset(conn, key)
        conn.execute(delete(projections).where(projections.c.name == key))
        conn.execute(dead_letters.delete().where(dead_letters.c.projection == key))
        positions.register(conn, key, "rebuild", cls.version)
        for table in shadows.values():
            table.create(conn)


def swap(engine: Engine, cls: type[Consumer], shadows: dict[str, Table]) -> None:
    """Put the rebuilt tables and positions in place of the live ones, atomically."""
    key = rebuild_key(cls.name)
    with write_connection(engine) as conn, conn.begin():
        # 0. A live worker in park mode starts each batch by locking the
        #    projection's row and only then writes the tables: take that row
        #    first too, or each would wait for the other (PostgreSQL).
        deadletters.lock(conn, cls.name)
        existing = set(inspect(conn).get_table_names())
        # 1. Tables next: a live worker mid-batch holds their locks and
        #    commits before we get them; it updates its positions after.
        for table in cls.tables:
            shadow = shadows[table.name]
            if table.name in existing:
                conn.execute(text(f"DROP TABLE {_quote(conn, table.name)}"))
            conn.execute(
                text(
                    f"ALTER TABLE {_quote(conn, shadow.name)} RENAME TO {_quote(conn, table.name)}"
                )
            )
            _rename_indexes(conn, table.name)
        # 2. Positions: the live ones get the rebuild's offsets under new revisions.
        live = positions.all_positions(conn, cls.name)
        rebuilt = positions.all_positions(conn, key)
        now = datetime.now(UTC)
        positions.reset(conn, cls.name)
        if rebuilt:
            conn.execute(
                positions_table.insert(),
                [
                    {
                        "projection": cls.name,
                        "topic": tp.topic,
                        "partition": tp.partition,
                        "offset": p.offset,
                        "last_position": p.last_position,
                        "revision": (live[tp].revision if tp in live else 0) + 1,
                        "updated_at": now,
                    }
                    for tp, p in rebuilt.items()
                ],
            )
        positions.reset(conn, key)
        # 3. State: the projection is now at the code's version.
        conn.execute(delete(projections).where(projections.c.name == key))
        positions.register(conn, cls.name, "projection", cls.version)
        conn.execute(
            projections.update()
            .where(projections.c.name == cls.name)
            .values(version=cls.version, status="rebuilt", last_error=None, updated_at=now)
        )
        deadletters.rename(conn, key, cls.name)


def _rename_indexes(conn: Connection, table: str) -> None:
    """Give the swapped-in table's indexes their declared names back."""
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            text(
                "SELECT indexname FROM pg_indexes"
                " WHERE schemaname = current_schema() AND tablename = :t"
            ),
            {"t": table},
        )
        for (name,) in rows.all():
            if SUFFIX in name:
                new = name.replace(SUFFIX, "")
                conn.execute(text(f'ALTER INDEX "{name}" RENAME TO "{new}"'))
        return
    # SQLite cannot rename an index: create it again under its own name.
    rows = conn.execute(
        text(
            "SELECT name, sql FROM sqlite_master"
            " WHERE type = 'index' AND tbl_name = :t AND sql IS NOT NULL"
        ),
        {"t": table},
    )
    for name, sql in rows.all():
        if SUFFIX in name:
            new = name.replace(SUFFIX, "")
            conn.execute(text(f'DROP INDEX "{name}"'))
            conn.execute(text(re.sub(re.escape(name), new, sql, count=1)))


def _quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)
