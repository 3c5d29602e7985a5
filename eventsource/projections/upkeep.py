"""A worker's work beside the log: replaying parked events and running due deadlines.

Both run in their own transactions with the worker's view (and, for a
reactor, a `Reaction` on its store), never with the batches' positions.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from eventsource.aggregates.base import caused_by_ids
from eventsource.errors import DecodeError
from eventsource.projections import deadletters, deadlines
from eventsource.projections.reaction import Reaction

if TYPE_CHECKING:
    from eventsource.projections.worker import Worker

log = logging.getLogger(__name__)


def replay_parked(worker: Worker) -> tuple[int, int]:
    """Apply parked events again, stream by stream, in order.

    A stream whose events all apply is released (its events are marked
    replayed and its later events flow again); one that fails again stays
    parked with its newest error. Returns `(replayed, still_parked)`.
    """
    worker.start_tables()
    with worker._transaction() as conn:
        waiting = deadletters.waiting(conn, worker.key)
    by_stream: dict[str, list[deadletters.DeadLetter]] = {}
    for letter in waiting:
        by_stream.setdefault(letter.stream_id or f"#{letter.id}", []).append(letter)
    replayed = 0
    for letters in by_stream.values():
        if _replay_stream(worker, letters):
            replayed += len(letters)
    return replayed, len(waiting) - replayed


def _replay_stream(worker: Worker, letters: list[deadletters.DeadLetter]) -> bool:
    cls = type(worker.consumer)
    try:
        with worker._transaction() as conn:
            deadletters.lock(conn, worker.key)
            worker.view.begin(conn)
            reaction = (
                Reaction(worker.store, conn, worker.view, owner=worker.key)
                if worker.store
                else None
            )
            for letter in letters:
                if letter.record is None:
                    raise DecodeError("not an event; it cannot be replayed", topic=letter.topic)
                event = worker.codec.decode(letter.record)
                handler = cls.handler_for(type(event))
                if handler is None:
                    continue
                worker.handle(handler, event, reaction)
            worker.view.flush()
            if reaction is not None:
                reaction.flush()
            deadletters.mark(conn, [letter.id for letter in letters], deadletters.REPLAYED)
    except Exception as exc:
        worker.view.rollback()
        log.warning("replay of %s failed again: %s", letters[0].stream_id, exc)
        with worker._transaction() as conn:
            deadletters.note_error(conn, letters[0].id, f"{type(exc).__name__}: {exc}")
        return False
    worker.view.commit()
    return True


def fire_deadlines(worker: Worker, now: datetime | None = None) -> int:
    """Run this reactor's deadlines that are due; return how many ran."""
    handlers = type(worker.consumer)._deadlines
    if worker.store is None or not handlers:
        return 0
    now = now or datetime.now(UTC)
    with worker._transaction() as conn:
        due = deadlines.due(conn, worker.key, now)
    fired = 0
    for item in due:
        handler = handlers.get(item.name)
        if handler is None:
            log.warning("%s has no @deadline(%r) handler; left pending", worker.name, item.name)
            continue
        try:
            with worker._transaction() as conn:
                if not deadlines.claim(conn, item):
                    continue  # cancelled, or another worker ran it
                worker.view.begin(conn)
                reaction = Reaction(worker.store, conn, worker.view, owner=worker.key)
                if item.cause_id is not None:
                    with caused_by_ids(item.cause_id, item.correlation_id or item.cause_id):
                        handler(worker.consumer, item, reaction)
                else:
                    handler(worker.consumer, item, reaction)
                worker.view.flush()
                reaction.flush()
        except Exception as exc:
            worker.view.rollback()
            log.warning("deadline %s/%s failed: %s", item.name, item.key, exc)
            with worker._transaction() as conn:
                deadlines.postpone(
                    conn,
                    item,
                    f"{type(exc).__name__}: {exc}",
                    max_attempts=type(worker.consumer).max_retries + 1,
                )
            continue
        worker.view.commit()
        fired += 1
    return fired
