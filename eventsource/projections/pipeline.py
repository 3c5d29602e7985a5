"""The commit pipeline: a batch commits on a second thread while the next is read.

Only for a projection writing PostgreSQL, whose work runs in the server's
process, and only under a short GIL switch interval or behind large batches
(see `Worker._commits_behind`): the worker's thread polls the next batch
while the committer thread writes and commits the last one. A batch
is folded only once the one before it has committed (`settle`), so the
view is never folded on top of rows that might still roll back.

The committer thread runs `Batches.finish` only: the view's `flush` and the
transaction's commit, on a connection opened by the worker's thread and
handed over; it touches nothing the worker's thread uses meanwhile.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from eventsource.errors import StalePosition
from eventsource.projections.batch import Batches, BatchStats, OpenBatch
from eventsource.projections.failures import FailurePolicy

log = logging.getLogger(__name__)


@dataclass
class _InFlight:
    batch: OpenBatch
    stats: BatchStats
    done: Future[None]


class CommitPipeline:
    """At most one batch committing behind the worker's back."""

    def __init__(self, batches: Batches, failures: FailurePolicy) -> None:
        self.batches = batches
        self.failures = failures
        context = batches.context
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"commit-{context.name}")
        self._in_flight: _InFlight | None = None

    def submit(self, batch: OpenBatch, stats: BatchStats) -> None:
        """Commit a folded batch on the committer thread (after `settle`)."""
        assert self._in_flight is None, "settle the batch in flight first"
        done = self._executor.submit(self.batches.finish, batch)
        self._in_flight = _InFlight(batch, stats, done)
        stats.applied = len(batch.messages)

    def settle(self, *, reapply: bool) -> bool:
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
            context = self.batches.context
            context.view.rollback()
            in_flight.stats.applied = 0
            if not reapply or not isinstance(exc, Exception):
                if isinstance(exc, StalePosition):
                    log.warning("%s; re-reading positions", exc)
                else:
                    log.warning(
                        "%s %s: a batch failed to commit (%s); its partitions resume"
                        " from their stored positions",
                        context.kind,
                        context.name,
                        exc,
                    )
                return False
            # The synchronous path sorts it out: retries, the culprit, poison, resync.
            resyncs = self.failures.assignment.resyncs
            self.failures.apply(in_flight.batch.messages, in_flight.stats, failed=exc)
            return self.failures.assignment.resyncs == resyncs
        self.batches.done(in_flight.batch)
        return True

    def close(self) -> None:
        """Drop the batch in flight's outcome (call `settle` first) and end the thread."""
        self.settle(reapply=False)
        self._executor.shutdown()
