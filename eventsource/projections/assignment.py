"""Which partitions a worker holds, and from where it reads them.

The log assigns partitions (Kafka spreads them over a consumer group; the
embedded log has one per topic); this module answers with the positions
stored beside the view, never Kafka's committed offsets, and notices when
those positions moved under the worker: another worker took a partition
over, or a rebuild swapped in its own view and positions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from sqlalchemy import Connection, select

from eventsource.bus.base import LogConsumer, StartAt, TopicPartition
from eventsource.errors import ProjectionVersionMismatch, StalePosition
from eventsource.projections import positions
from eventsource.projections.context import WorkerContext
from eventsource.projections.positions import Position
from eventsource.retry import RetryPolicy
from eventsource.store.engine import read_transaction

log = logging.getLogger(__name__)


class Assignment:
    """The partitions held and their positions, kept true to the database.

    `held` is shared with the batches, which move it on as they commit.
    `before_change` runs before partitions come or go (the commit pipeline
    settles the batch in flight, whose positions the next owner starts from).
    """

    # How often an idle worker looks whether its positions moved under it.
    IDLE_CHECK_SECONDS = 1.0

    def __init__(
        self,
        context: WorkerContext,
        log_consumer: LogConsumer,
        held: dict[TopicPartition, Position],
        *,
        check_version: bool,
        start_at: str = "beginning",
        retry: RetryPolicy | None = None,
    ) -> None:
        self.context = context
        self.start_at = start_at
        # The log's callbacks run inside its poll: a database outage there is
        # waited out, or the partitions would be left unassigned.
        self.retry = retry or RetryPolicy(f"{context.kind} {context.name}")
        self.log = log_consumer
        self.held = held
        self.check_version = check_version
        self.before_change: Callable[[], None] = lambda: None
        self.resyncs = 0
        self._idle_checked = 0.0

    # -- the log's callbacks ---------------------------------------------------

    def assigned(self, partitions: list[TopicPartition]) -> dict[TopicPartition, StartAt]:
        """Partitions came: where each resumes."""
        context = self.context
        self.before_change()
        loaded, fresh = self.retry.call(lambda: self._load(partitions))
        self.held.update(loaded)
        owns = self._owns_everything()
        context.view.shared = not owns
        if fresh and owns:
            context.view.mark_empty()
        else:
            context.view.clear_cache()
        log.info("%s %s resumes at %s", context.kind, context.name, _describe(loaded))
        return {tp: p.start for tp, p in loaded.items()}

    def revoked(self, partitions: list[TopicPartition]) -> None:
        """Partitions went: the batch in flight commits first, then they are forgotten."""
        self.before_change()
        for tp in partitions:
            self.held.pop(tp, None)
        self.context.view.clear_cache()

    def _load(
        self, partitions: list[TopicPartition]
    ) -> tuple[dict[TopicPartition, Position], bool]:
        context = self.context
        with context.transaction() as conn:
            loaded = positions.load(conn, context.key, partitions)
            fresh = all(p.revision == 0 for p in loaded.values()) and self._tables_empty(conn)
        if self.start_at == "end":
            loaded.update(self._start_at_end(loaded))
        return loaded, fresh

    def _start_at_end(
        self, loaded: dict[TopicPartition, Position]
    ) -> dict[TopicPartition, Position]:
        """Partitions never started begin at their end: their positions are
        stored at once, so a restart resumes there rather than at a later end.

        The ends are read outside any transaction of ours (on an in-memory
        SQLite database the log and the positions share one connection).
        """
        unstarted = [tp for tp, p in loaded.items() if p.revision == 0]
        if not unstarted:
            return {}
        ends = self.log.ends(unstarted)
        moves = {tp: (loaded[tp], ends[tp].offset, ends[tp].last_position) for tp in unstarted}
        context = self.context
        try:
            with context.transaction() as conn:
                started = positions.advance(conn, context.key, moves)
        except StalePosition:
            # Another worker started them meanwhile: its positions stand.
            with context.transaction() as conn:
                return positions.load(conn, context.key, unstarted)
        log.info(
            "%s %s starts at the end of the log: %s", context.kind, context.name, _describe(started)
        )
        return started

    # -- positions that moved under us -----------------------------------------

    def resync(self) -> None:
        """The positions held are stale: read them again and move the consumer there.

        If a rebuild swapped in another version of the projection, this
        (older) code must not write to it: stop.
        """
        context = self.context
        self.resyncs += 1
        context.view.clear_cache()
        with context.transaction() as conn:
            if self.check_version:
                stored = positions.stored_version(conn, context.key)
                declared = type(context.consumer).version
                if stored is not None and stored != declared:
                    raise ProjectionVersionMismatch(context.name, stored, declared)
            loaded = positions.load(conn, context.key, list(self.held))
        self.held.update(loaded)
        for tp, position in loaded.items():
            self.log.seek(tp, position.start)

    def check_when_idle(self) -> None:
        """Notice positions that moved under us while there is nothing to apply.

        A rebuild's swap puts its own positions (and a newer view) in place; a
        busy worker learns of it when its next commit is refused, but an idle
        one would sit past events the swapped-in view lacks until the next
        event arrives. Reading the revisions is one small query a second.
        """
        now = time.monotonic()
        if not self.held or now - self._idle_checked < self.IDLE_CHECK_SECONDS:
            return
        self._idle_checked = now
        context = self.context
        with read_transaction(context.engine) as conn:
            stored = positions.all_positions(conn, context.key)
        if any(
            tp in stored and stored[tp].revision != mine.revision for tp, mine in self.held.items()
        ):
            log.info(
                "%s %s: positions moved (a rebuild swapped in?); re-reading them",
                context.kind,
                context.name,
            )
            self.resync()

    # -- internals -------------------------------------------------------------

    def _tables_empty(self, conn: Connection) -> bool:
        return all(
            conn.execute(select(1).select_from(t).limit(1)).first() is None
            for t in self.context.tables
        )

    def _owns_everything(self) -> bool:
        # With partitions spread over several workers, two workers may write
        # one view row: then rows must be re-read (and locked) in every batch.
        return all(
            len([tp for tp in self.held if tp.topic == topic]) >= self.log.partitions(topic)
            for topic in type(self.context.consumer).topics
        )


def _describe(loaded: Mapping[TopicPartition, Position]) -> str:
    return ", ".join(f"{tp}@{p.offset}" for tp, p in sorted(loaded.items())) or "no partitions"
