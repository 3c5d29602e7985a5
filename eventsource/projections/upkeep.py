"""A worker's work beside the log: dead letters (replay, skip) and due deadlines.

Both run on the worker's own thread, between batches (see `Inbox`), in
their own transactions with the worker's view (and, for a reactor, a
`Reaction` on its store), never with the batches' positions.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import Connection

from eventsource.aggregates.base import caused_by_ids
from eventsource.bus.base import TopicPartition
from eventsource.errors import ConfigurationError, DecodeError
from eventsource.projections import deadletters, deadlines, positions
from eventsource.projections.context import WorkerContext
from eventsource.projections.reaction import Reaction
from eventsource.retry import loggable

log = logging.getLogger(__name__)


def replay(context: WorkerContext) -> tuple[int, int]:
    """Apply dead letters again, now that their handler is fixed.

    An event the worker stopped on is applied and its partition moved past
    it, in one transaction. Parked streams are applied event by event, in
    order; a stream whose events all apply flows again, one that fails again
    stays parked at the event that failed, with its newest error. Returns
    `(replayed, still_open)`.
    """
    with context.transaction() as conn:
        stopped = deadletters.stopped(conn, context.key)
        waiting = deadletters.waiting(conn, context.key)
    replayed = sum(_replay_stopped(context, letter) for letter in stopped)
    for letters in _by_stream(waiting).values():
        replayed += _replay_stream(context, letters)
    with context.transaction() as conn:
        left = sum(
            n
            for status, n in deadletters.counts(conn, context.key).items()
            if status in deadletters.OPEN
        )
    return replayed, left


def skip(context: WorkerContext, letter_id: int, *, reason: str, by: str | None) -> str:
    """Decide that a dead letter's event will never be applied.

    The decision is recorded with `reason`, `by` and the time; the event
    stays in the log. An event the worker stopped on is passed (its
    partition moves on); a parked one releases its stream, whose events
    waiting behind it are applied in order. Returns what was done, in words.
    """
    if not reason.strip():
        raise ConfigurationError("skipping an event needs a reason (it is recorded)")
    with context.transaction() as conn:
        deadletters.lock(conn, context.key)
        letter = deadletters.get(conn, context.key, letter_id)
        if letter is None:
            raise ConfigurationError(f"{context.name} has no dead letter {letter_id}")
        if letter.status not in deadletters.OPEN:
            raise ConfigurationError(
                f"dead letter {letter_id} of {context.name} is {letter.status}; only parked,"
                " blocked and stopped ones can be skipped"
            )
        if letter.status == deadletters.STOPPED:
            _move_past(conn, context, letter)
        deadletters.resolve(conn, letter.id, deadletters.SKIPPED, reason=reason, by=by)
    where = f"{letter.topic}[{letter.partition}]@{letter.offset}"
    if letter.status == deadletters.STOPPED:
        return f"skipped {letter.event_type or 'message'} at {where}; the worker goes on after it"
    with context.transaction() as conn:
        behind = [
            waiting
            for waiting in deadletters.waiting(conn, context.key)
            if letter.stream_id is not None and waiting.stream_id == letter.stream_id
        ]
    applied = _replay_stream(context, behind) if behind else 0
    left = len(behind) - applied
    return (
        f"skipped {letter.event_type or 'message'} at {where}; {applied} event(s) waiting behind"
        f" it applied" + (f", {left} still parked" if left else "")
    )


def _by_stream(letters: list[deadletters.DeadLetter]) -> dict[str, list[deadletters.DeadLetter]]:
    by_stream: dict[str, list[deadletters.DeadLetter]] = {}
    for letter in letters:
        by_stream.setdefault(letter.stream_id or f"#{letter.id}", []).append(letter)
    return by_stream


def _replay_stopped(context: WorkerContext, letter: deadletters.DeadLetter) -> bool:
    try:
        with context.transaction() as conn:
            if not _move_past(conn, context, letter):
                deadletters.resolve(
                    conn, letter.id, deadletters.RESOLVED, reason="the worker got past it", by=None
                )
                return False
            _apply(context, conn, letter)
            deadletters.resolve(conn, letter.id, deadletters.REPLAYED, reason=None, by=None)
    except Exception as exc:
        return _failed_again(context, letter, exc)
    context.view.commit()
    return True


def _replay_stream(context: WorkerContext, letters: list[deadletters.DeadLetter]) -> int:
    """Apply a stream's letters in order, each in its own transaction; stop at
    the first that fails again. Returns how many applied."""
    for done, letter in enumerate(letters):
        try:
            with context.transaction() as conn:
                deadletters.lock(conn, context.key)
                _apply(context, conn, letter)
                deadletters.resolve(conn, letter.id, deadletters.REPLAYED, reason=None, by=None)
        except Exception as exc:
            _failed_again(context, letter, exc)
            return done
        context.view.commit()
    return len(letters)


def _apply(context: WorkerContext, conn: Connection, letter: deadletters.DeadLetter) -> None:
    """Apply one dead letter's event with the consumer's handler, in `conn`'s transaction."""
    if letter.record is None:
        raise DecodeError("not an event; it cannot be replayed", topic=letter.topic)
    context.view.begin(conn)
    reaction = context.reaction(conn)
    event = context.codec.decode(letter.record)
    handler = type(context.consumer).handler_for(type(event))
    if handler is not None:
        context.handle(handler, event, reaction)
    context.view.flush()
    if reaction is not None:
        reaction.flush()


def _move_past(conn: Connection, context: WorkerContext, letter: deadletters.DeadLetter) -> bool:
    """Move the letter's partition past it, if its position is not past it
    already (compare-and-set: a worker that moved it meanwhile wins)."""
    tp = TopicPartition(letter.topic, letter.partition)
    held = positions.load(conn, context.key, [tp])[tp]
    if held.offset > letter.offset:
        return False
    last = max(held.last_position, letter.position or 0)
    positions.advance(conn, context.key, {tp: (held, letter.offset + 1, last)})
    return True


def _failed_again(context: WorkerContext, letter: deadletters.DeadLetter, exc: Exception) -> bool:
    context.view.rollback()
    log.warning("replay of %s failed again: %s", letter.stream_id or letter.id, loggable(exc))
    with context.transaction() as conn:
        deadletters.note_error(conn, letter, f"{type(exc).__name__}: {exc}")
    return False


def fire_deadlines(context: WorkerContext, now: datetime | None = None) -> int:
    """Run this reactor's deadlines that are due; return how many ran."""
    handlers = type(context.consumer)._deadlines
    if context.store is None or not handlers:
        return 0
    now = now or datetime.now(UTC)
    with context.transaction() as conn:
        due = deadlines.due(conn, context.key, now)
    fired = 0
    for item in due:
        handler = handlers.get(item.name)
        if handler is None:
            log.warning("%s has no @deadline(%r) handler; left pending", context.name, item.name)
            continue
        try:
            with context.transaction() as conn:
                if not deadlines.claim(conn, item):
                    continue  # cancelled, or another worker ran it
                context.view.begin(conn)
                reaction = Reaction(context.store, conn, context.view, owner=context.key)
                if item.cause_id is not None:
                    with caused_by_ids(item.cause_id, item.correlation_id or item.cause_id):
                        handler(context.consumer, item, reaction)
                else:
                    handler(context.consumer, item, reaction)
                context.view.flush()
                reaction.flush()
        except Exception as exc:
            context.view.rollback()
            log.warning("deadline %s/%s failed: %s", item.name, item.key, loggable(exc))
            with context.transaction() as conn:
                deadlines.postpone(
                    conn,
                    item,
                    f"{type(exc).__name__}: {exc}",
                    max_attempts=type(context.consumer).max_retries + 1,
                    now=now,
                )
            continue
        context.view.commit()
        fired += 1
    return fired
