"""A worker's work beside the log: replaying parked events and running due deadlines.

Both run on the worker's own thread, between batches (see `Inbox`), in
their own transactions with the worker's view (and, for a reactor, a
`Reaction` on its store), never with the batches' positions.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from eventsource.aggregates.base import caused_by_ids
from eventsource.errors import DecodeError
from eventsource.projections import deadletters, deadlines
from eventsource.projections.context import WorkerContext
from eventsource.projections.reaction import Reaction

log = logging.getLogger(__name__)


def replay_parked(context: WorkerContext) -> tuple[int, int]:
    """Apply parked events again, stream by stream, in order.

    A stream whose events all apply is released (its events are marked
    replayed and its later events flow again); one that fails again stays
    parked with its newest error. Returns `(replayed, still_parked)`.
    """
    with context.transaction() as conn:
        waiting = deadletters.waiting(conn, context.key)
    by_stream: dict[str, list[deadletters.DeadLetter]] = {}
    for letter in waiting:
        by_stream.setdefault(letter.stream_id or f"#{letter.id}", []).append(letter)
    replayed = 0
    for letters in by_stream.values():
        if _replay_stream(context, letters):
            replayed += len(letters)
    return replayed, len(waiting) - replayed


def _replay_stream(context: WorkerContext, letters: list[deadletters.DeadLetter]) -> bool:
    cls = type(context.consumer)
    try:
        with context.transaction() as conn:
            deadletters.lock(conn, context.key)
            context.view.begin(conn)
            reaction = context.reaction(conn)
            for letter in letters:
                if letter.record is None:
                    raise DecodeError("not an event; it cannot be replayed", topic=letter.topic)
                event = context.codec.decode(letter.record)
                handler = cls.handler_for(type(event))
                if handler is None:
                    continue
                context.handle(handler, event, reaction)
            context.view.flush()
            if reaction is not None:
                reaction.flush()
            deadletters.mark(conn, [letter.id for letter in letters], deadletters.REPLAYED)
    except Exception as exc:
        context.view.rollback()
        log.warning("replay of %s failed again: %s", letters[0].stream_id, exc)
        with context.transaction() as conn:
            deadletters.note_error(conn, letters[0].id, f"{type(exc).__name__}: {exc}")
        return False
    context.view.commit()
    return True


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
            log.warning("deadline %s/%s failed: %s", item.name, item.key, exc)
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
