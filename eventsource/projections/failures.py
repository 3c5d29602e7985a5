"""What a worker does when a batch fails: retry, find the culprit, park or stop.

1. A transient failure (a lost connection, a deadlock, another writer of a
   reactor's aggregates) runs the same batch again, with backoff.
2. A handler's failure commits the messages before the culprit, then
   retries the culprit alone with backoff (`max_retries`); when the view
   refused the batch's rows and no message is known to be the culprit, the
   batch is bisected down to one message at a time.
3. A message that still fails is poison: with `on_failure = "park"` it is
   parked in the dead-letter table and the worker moves past it (later
   events of its stream wait behind it); with "stop" it is recorded as the
   dead letter the worker stopped on, and `PoisonEvent` stops the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from eventsource.bus.base import LogMessage
from eventsource.errors import DecodeError, PoisonEvent, StalePosition
from eventsource.projections import deadletters, positions
from eventsource.projections.assignment import Assignment
from eventsource.projections.batch import Batches, BatchStats, HandlerFailed
from eventsource.projections.transient import TRANSIENT
from eventsource.retry import RetryPolicy, loggable

log = logging.getLogger(__name__)


class FailurePolicy:
    """Applies messages on the synchronous path, sorting out what fails."""

    MAX_BACKOFF = 10.0

    def __init__(
        self,
        batches: Batches,
        assignment: Assignment,
        *,
        retry_backoff: float,
        retry: RetryPolicy,
    ) -> None:
        self.batches = batches
        self.assignment = assignment
        self.retry_backoff = retry_backoff
        self.retry = retry
        self.on_error: Callable[[], None] = lambda: None  # a handler failed (for metrics)

    def apply(
        self,
        messages: Sequence[LogMessage],
        stats: BatchStats,
        failed: BaseException | None = None,
    ) -> None:
        """Apply `messages`, retrying, finding the culprit and parking as needed.

        `failed`: how a first attempt at the whole batch already failed.
        Returns early, leaving the rest unapplied, when the worker is asked
        to stop while it waits to retry, or when its positions turned out
        stale (they are re-read; the rest is read again from there).
        """
        pending = self.batches.owned(messages)
        limit = len(pending)
        attempt = 0
        culprit: HandlerFailed | None = None  # how pending[limit] failed, once known
        while pending:
            batch = pending[:limit] if limit else pending[:1]
            try:
                if failed is not None:
                    error, failed = failed, None
                    raise error
                if not self._attempt(batch, culprit if limit == 0 else None):
                    return
            except StalePosition as exc:
                log.warning("%s; re-reading positions", exc)
                self.assignment.resync()
                return
            except TRANSIENT as exc:
                # The database or broker is away (or a reactor lost a race):
                # the same batch runs again once it is back.
                attempt += 1
                stats.retried = True
                self.retry.failed(exc, attempt)
                continue
            except HandlerFailed as failure:
                stats.retried = True
                self.on_error()
                if failure.index is None and len(batch) > 1:
                    limit = 1  # the view refused the batch's rows: find the culprit alone
                else:
                    # Commit what went well before the failure, then retry it alone.
                    limit, culprit = failure.index or 0, failure
                continue
            if attempt:
                self.retry.recovered()
            stats.applied += len(batch)
            pending = pending[len(batch) :]
            if culprit is not None and limit > 0:
                limit = 0  # the messages before the culprit committed: it is next
            else:
                limit, culprit = len(pending), None
            attempt = 0

    def _attempt(self, batch: Sequence[LogMessage], culprit: HandlerFailed | None) -> bool:
        """Commit `batch`; or, when it is the `culprit` whose first attempt
        failed already, retry it alone. False if asked to stop meanwhile."""
        if culprit is None:
            self.batches.commit(batch)
            return True
        return self._retry_alone(batch[0], culprit)

    def _retry_alone(self, message: LogMessage, failure: HandlerFailed) -> bool:
        """Retry one failing message with backoff; past the limit it is poison.

        Returns False if the worker was asked to stop meanwhile.
        """
        consumer = type(self.batches.context.consumer)
        retryable = not isinstance(failure.error, DecodeError)
        limit = consumer.max_retries if retryable else 0
        error = failure.error
        attempt = 0
        while attempt < limit:
            attempt += 1
            where = f"{message.topic_partition}@{message.offset}"
            if not self._pause(attempt, f"handler failed on {where}: {error}"):
                return False
            try:
                self.batches.commit([message])
                return True
            except HandlerFailed as again:
                error = again.error
            except TRANSIENT as exc:
                error = exc
        self._poison(message, error)
        return True

    def _pause(self, attempt: int, reason: str) -> bool:
        """Wait before the next attempt; False if the worker is asked to stop meanwhile."""
        context = self.batches.context
        delay = min(self.retry_backoff * 2 ** (attempt - 1), self.MAX_BACKOFF)
        log.warning(
            "%s %s: %s; retrying in %.1f s", context.kind, context.name, loggable(reason), delay
        )
        return not self.retry.stop.wait(delay)

    def _poison(self, message: LogMessage, error: BaseException) -> None:
        """A message failed for good: park it, then stop or go on (`on_failure`)."""
        context = self.batches.context
        record = message.record
        poison = PoisonEvent(
            context.name,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            event_type=record.event_type if record else None,
            event_id=record.event_id if record else None,
            error=error,
            # A transform on the embedded log runs as a reactor: name it as the user does.
            kind="transform" if hasattr(context.consumer, "transform") else context.kind,
        )
        text = f"{type(error).__name__}: {error}"
        held = self.batches.held
        if type(context.consumer).on_failure == "park":
            # Park it and move past it in one transaction; its stream's later
            # events will wait behind it.
            with context.transaction() as conn:
                deadletters.park(conn, context.key, message, text, deadletters.PARKED)
                advanced = positions.advance(conn, context.key, self.batches.moves([message]))
            held.update(advanced)
            log.error("%s; parked it, its stream waits behind it", loggable(poison))
            return
        with context.transaction() as conn:
            # A worker whose position moved on (a rebuild swapped in another
            # version, another worker took over) has lost the partition: it
            # re-reads its positions rather than stopping the projection.
            tp = message.topic_partition
            positions.check_current(conn, context.key, tp, held[tp])
            deadletters.clear_stopped(
                conn, context.key, message.topic, message.partition, message.offset
            )
            deadletters.park(conn, context.key, message, text, deadletters.STOPPED)
            positions.set_status(conn, context.key, "failed", error=str(poison))
        raise poison from error
