"""Deadlines: commands that run at a time, recorded so that they survive restarts.

A reactor schedules one while reacting (`reaction.schedule(...)`), in the same
transaction as its other effects; `@deadline(name)` methods run them when they
fall due. The due time lives in the `deadlines` table, so a restarted worker
runs what fell due while it was down.

What a (name, key) holds, and when it runs:

* `schedule(name, key, due_at, payload)` records a new schedule in the slot,
  whatever was there: a pending one is replaced (its due time and payload
  are gone; it never runs), a done, cancelled or failed one is followed by
  the new one. Each schedule has a revision, one more than the last.
* `cancel(name, key)` cancels the pending schedule, if there is one.
* A schedule runs at most once, never before its due time, and only while it
  is still the slot's current, pending schedule: the claim names the
  revision that was read (compare-and-set), and the handler's effects and
  the claim commit in one transaction. A schedule moved or cancelled after
  it was read is not run with its old payload, not marked done early, and
  not lost: the new one runs in its own time.
* A failing handler is retried later, with growing delays, up to the
  reactor's `max_retries`; then its status is `failed`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import orjson
from sqlalchemy import ColumnElement, Connection, and_, select, update

from eventsource.errors import ConfigurationError
from eventsource.projections.tables import deadlines
from eventsource.store.engine import upsert_into

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., None])
DEADLINE_ATTR = "__eventsource_deadline__"
PENDING = "pending"
DONE = "done"
CANCELLED = "cancelled"
FAILED = "failed"


@dataclass(frozen=True)
class Deadline:
    """A scheduled command as its handler receives it."""

    owner: str
    name: str
    key: str
    due_at: datetime
    payload: dict[str, Any]
    cause_id: UUID | None
    correlation_id: UUID | None
    attempts: int
    revision: int = 1


def deadline(name: str) -> Callable[[F], F]:
    """Mark a reactor method as the handler of deadlines called `name`.

    The method takes `(self, deadline: Deadline, reaction: Reaction)`.
    """
    if not name:
        raise ConfigurationError("@deadline() needs a name")

    def mark(method: F) -> F:
        setattr(method, DEADLINE_ATTR, name)
        return method

    return mark


def schedule(
    conn: Connection,
    *,
    owner: str,
    name: str,
    key: str,
    due_at: datetime,
    payload: dict[str, Any],
    cause_id: UUID | None,
    correlation_id: UUID | None,
) -> None:
    """Record (or move) the deadline `(owner, name, key)`."""
    if due_at.tzinfo is None:
        raise ConfigurationError("a deadline's due time must be time-zone aware")
    values = {
        "owner": owner,
        "name": name,
        "key": key,
        "due_at": due_at,
        "payload": orjson.dumps(payload).decode(),
        "cause_id": str(cause_id) if cause_id else None,
        "correlation_id": str(correlation_id) if correlation_id else None,
        "status": PENDING,
        "attempts": 0,
        "last_error": None,
        "created_at": datetime.now(UTC),
        "done_at": None,
    }
    statement = upsert_into(conn, deadlines).values({**values, "revision": 1})
    replaced = {k: statement.excluded[k] for k in values if k not in ("owner", "name", "key")}
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[deadlines.c.owner, deadlines.c.name, deadlines.c.key],
            set_={**replaced, "revision": deadlines.c.revision + 1},
        )
    )


def cancel(conn: Connection, *, owner: str, name: str, key: str) -> None:
    conn.execute(
        update(deadlines)
        .where(_still_pending(owner, name, key))
        .values(status=CANCELLED, done_at=datetime.now(UTC))
    )


def due(conn: Connection, owner: str, now: datetime, *, limit: int = 100) -> list[Deadline]:
    """Pending deadlines of `owner` due at `now`, earliest first."""
    rows = conn.execute(
        select(deadlines)
        .where(
            and_(
                deadlines.c.owner == owner,
                deadlines.c.status == PENDING,
                deadlines.c.due_at <= now,
            )
        )
        .order_by(deadlines.c.due_at)
        .limit(limit)
    ).mappings()
    return [_deadline(row) for row in rows]


def _still_pending(owner: str, name: str, key: str) -> ColumnElement[bool]:
    return and_(
        deadlines.c.owner == owner,
        deadlines.c.name == name,
        deadlines.c.key == key,
        deadlines.c.status == PENDING,
    )


def claim(conn: Connection, item: Deadline, status: str = DONE) -> bool:
    """Mark a pending deadline done within the caller's transaction, if it is
    still the schedule that was read; False if another worker ran it, or it
    was cancelled or moved since."""
    result = conn.execute(
        update(deadlines)
        .where(_still_as_read(item))
        .values(status=status, done_at=datetime.now(UTC), attempts=item.attempts + 1)
    )
    return result.rowcount == 1


def _still_as_read(item: Deadline) -> ColumnElement[bool]:
    return and_(
        _still_pending(item.owner, item.name, item.key), deadlines.c.revision == item.revision
    )


def postpone(
    conn: Connection, item: Deadline, error: str, *, max_attempts: int, now: datetime
) -> None:
    """The command failed: try again later, or give up after `max_attempts`.

    Later means after `now`, the time it was fired at, and never before its
    own due time. Only while it is still the schedule that was read: between
    the failed attempt's rollback and this update, another worker may have
    run it, or a reaction cancelled or moved it.
    """
    attempts = item.attempts + 1
    status = FAILED if attempts >= max_attempts else PENDING
    delay = timedelta(seconds=min(2**attempts, 300))
    conn.execute(
        update(deadlines)
        .where(_still_as_read(item))
        .values(
            attempts=attempts,
            status=status,
            last_error=error[:10_000],
            due_at=max(now, item.due_at) + delay,
        )
    )


def pending(conn: Connection, owner: str) -> list[Deadline]:
    rows = conn.execute(
        select(deadlines)
        .where(and_(deadlines.c.owner == owner, deadlines.c.status == PENDING))
        .order_by(deadlines.c.due_at)
    ).mappings()
    return [_deadline(row) for row in rows]


def _deadline(row: Any) -> Deadline:
    due_at = row["due_at"]
    if due_at.tzinfo is None:
        due_at = due_at.replace(tzinfo=UTC)
    return Deadline(
        owner=row["owner"],
        name=row["name"],
        key=row["key"],
        due_at=due_at,
        payload=orjson.loads(row["payload"]),
        cause_id=UUID(row["cause_id"]) if row["cause_id"] else None,
        correlation_id=UUID(row["correlation_id"]) if row["correlation_id"] else None,
        attempts=int(row["attempts"]),
        revision=int(row["revision"]),
    )
