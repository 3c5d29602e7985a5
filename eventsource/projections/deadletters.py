"""The dead-letter table: events a handler could not apply, kept with their error.

Nothing is ever silently dropped. A parked event blocks the later events of
its stream (their order matters), which are parked behind it as "blocked";
other streams flow. Once the handler is fixed, `replay` applies them in order.
An event that can never be applied is `skipped`: the decision is recorded
(why, by whom, when), the event stays in the log, and its stream is released.

One dead letter per event: a worker that stops on an event, is restarted and
parks it (or stops again) updates that event's letter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy import Connection, and_, func, select, update

from eventsource.bus.base import LogMessage
from eventsource.events.records import StoredEvent
from eventsource.projections.tables import dead_letters, projections

PARKED = "parked"
BLOCKED = "blocked"
STOPPED = "stopped"
REPLAYED = "replayed"
RESOLVED = "resolved"
SKIPPED = "skipped"
WAITING = (PARKED, BLOCKED)
OPEN = (PARKED, BLOCKED, STOPPED)


@dataclass(frozen=True)
class DeadLetter:
    id: int
    projection: str
    topic: str
    partition: int
    offset: int
    stream_id: str | None
    position: int | None
    event_type: str | None
    error: str
    status: str
    parked_at: datetime
    record: StoredEvent | None
    resolution: str | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "stream_id": self.stream_id,
            "position": self.position,
            "event_type": self.event_type,
            "error": self.error,
            "status": self.status,
            "parked_at": self.parked_at.isoformat(),
            "resolution": self.resolution,
            "resolved_by": self.resolved_by,
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
        }


def park(conn: Connection, projection: str, message: LogMessage, error: str, status: str) -> None:
    """Record `message` as a dead letter of `projection` (its open letter, if
    it has one already, takes the new status and error)."""
    record = message.record
    updated = conn.execute(
        update(dead_letters)
        .where(
            and_(
                dead_letters.c.projection == projection,
                dead_letters.c.topic == message.topic,
                dead_letters.c.partition == message.partition,
                dead_letters.c.offset == message.offset,
                dead_letters.c.status.in_(OPEN),
            )
        )
        .values(status=status, error=error[:10_000], parked_at=datetime.now(UTC))
    )
    if updated.rowcount:
        return
    conn.execute(
        dead_letters.insert().values(
            projection=projection,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            stream_id=record.stream_id if record else None,
            position=record.position if record else None,
            event_type=record.event_type if record else None,
            event_id=str(record.event_id) if record else None,
            record=encode_record(record) if record else None,
            error=error[:10_000],
            status=status,
            parked_at=datetime.now(UTC),
        )
    )


def lock(conn: Connection, projection: str) -> None:
    """Serialise a batch that parks with a replay (PostgreSQL; SQLite's writes already are)."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            select(projections.c.name).where(projections.c.name == projection).with_for_update()
        )


def blocked_streams(conn: Connection, projection: str) -> set[str]:
    """Streams that have events waiting in the dead-letter table."""
    rows = conn.execute(
        select(dead_letters.c.stream_id)
        .where(
            and_(
                dead_letters.c.projection == projection,
                dead_letters.c.status.in_(WAITING),
                dead_letters.c.stream_id.is_not(None),
            )
        )
        .distinct()
    )
    return {r[0] for r in rows}


def waiting(conn: Connection, projection: str) -> list[DeadLetter]:
    """Parked and blocked events of `projection`, oldest first."""
    rows = conn.execute(
        select(dead_letters)
        .where(and_(dead_letters.c.projection == projection, dead_letters.c.status.in_(WAITING)))
        .order_by(dead_letters.c.id)
    ).mappings()
    return [_letter(row) for row in rows]


def listing(conn: Connection, projection: str, *, limit: int = 100) -> list[DeadLetter]:
    """The most recent dead letters of `projection`, any status."""
    rows = conn.execute(
        select(dead_letters)
        .where(dead_letters.c.projection == projection)
        .order_by(dead_letters.c.id.desc())
        .limit(limit)
    ).mappings()
    return [_letter(row) for row in rows]


def get(conn: Connection, projection: str, letter_id: int) -> DeadLetter | None:
    row = (
        conn.execute(
            select(dead_letters).where(
                and_(dead_letters.c.projection == projection, dead_letters.c.id == letter_id)
            )
        )
        .mappings()
        .first()
    )
    return _letter(row) if row is not None else None


def stopped(conn: Connection, projection: str) -> list[DeadLetter]:
    """The events the worker stopped on, oldest first."""
    rows = conn.execute(
        select(dead_letters)
        .where(and_(dead_letters.c.projection == projection, dead_letters.c.status == STOPPED))
        .order_by(dead_letters.c.id)
    ).mappings()
    return [_letter(row) for row in rows]


def counts(conn: Connection, projection: str) -> dict[str, int]:
    """How many dead letters `projection` has, by status."""
    rows = conn.execute(
        select(dead_letters.c.status, func.count())
        .where(dead_letters.c.projection == projection)
        .group_by(dead_letters.c.status)
    )
    return {status: int(n) for status, n in rows}


def resolve(
    conn: Connection, letter_id: int, status: str, *, reason: str | None, by: str | None
) -> None:
    """Close a dead letter (replayed, skipped), saying why and by whom."""
    conn.execute(
        update(dead_letters)
        .where(dead_letters.c.id == letter_id)
        .values(status=status, resolution=reason, resolved_by=by, resolved_at=datetime.now(UTC))
    )


def count_waiting(conn: Connection, projection: str) -> int:
    return int(
        conn.execute(
            select(func.count()).where(
                and_(dead_letters.c.projection == projection, dead_letters.c.status.in_(WAITING))
            )
        ).scalar_one()
    )


def mark(conn: Connection, ids: list[int], status: str) -> None:
    """Close dead letters (replayed, resolved)."""
    conn.execute(
        update(dead_letters)
        .where(dead_letters.c.id.in_(ids))
        .values(status=status, resolved_at=datetime.now(UTC))
    )


def note_error(conn: Connection, letter: DeadLetter, error: str) -> None:
    """A replay failed again: keep the dead letter, with its newest error (a
    blocked one that failed itself is parked now: the stream waits on it)."""
    status = PARKED if letter.status == BLOCKED else letter.status
    conn.execute(
        update(dead_letters)
        .where(dead_letters.c.id == letter.id)
        .values(error=error[:10_000], status=status)
    )


def clear_stopped(
    conn: Connection, projection: str, topic: str, partition: int, offset: int
) -> None:
    """Drop an earlier record of stopping on the same message (a restart stopped again)."""
    conn.execute(
        dead_letters.delete().where(
            and_(
                dead_letters.c.projection == projection,
                dead_letters.c.status == STOPPED,
                dead_letters.c.topic == topic,
                dead_letters.c.partition == partition,
                dead_letters.c.offset == offset,
            )
        )
    )


def resolve_stopped(conn: Connection, projection: str, moved: dict[tuple[str, int], int]) -> None:
    """The worker got past the message it once stopped on: close that dead letter.

    `moved` maps `(topic, partition)` to the partition's new offset.
    """
    now = datetime.now(UTC)
    for (topic, partition), offset in moved.items():
        conn.execute(
            update(dead_letters)
            .where(
                and_(
                    dead_letters.c.projection == projection,
                    dead_letters.c.status == STOPPED,
                    dead_letters.c.topic == topic,
                    dead_letters.c.partition == partition,
                    dead_letters.c.offset < offset,
                )
            )
            .values(status=RESOLVED, resolved_at=now)
        )


def has_stopped(conn: Connection, projection: str) -> bool:
    found = conn.execute(
        select(dead_letters.c.id)
        .where(and_(dead_letters.c.projection == projection, dead_letters.c.status == STOPPED))
        .limit(1)
    ).first()
    return found is not None


def rename(conn: Connection, source: str, target: str) -> None:
    """Hand `source`'s dead letters to `target` (a rebuild's, at the swap)."""
    conn.execute(dead_letters.delete().where(dead_letters.c.projection == target))
    conn.execute(
        update(dead_letters).where(dead_letters.c.projection == source).values(projection=target)
    )


def encode_record(record: StoredEvent) -> str:
    return orjson.dumps(
        {
            "position": record.position,
            "stream_id": record.stream_id,
            "aggregate_id": record.aggregate_id,
            "aggregate_type": record.aggregate_type,
            "version": record.version,
            "event_type": record.event_type,
            "schema_version": record.schema_version,
            "event_id": str(record.event_id),
            "occurred_at": record.occurred_at.isoformat(),
            "payload": record.payload,
            "metadata": record.metadata,
        }
    ).decode()


def decode_record(text: str) -> StoredEvent:
    data = orjson.loads(text)
    return StoredEvent(
        position=int(data["position"]),
        stream_id=data["stream_id"],
        aggregate_id=data["aggregate_id"],
        aggregate_type=data["aggregate_type"],
        version=int(data["version"]),
        event_type=data["event_type"],
        schema_version=int(data["schema_version"]),
        event_id=UUID(data["event_id"]),
        occurred_at=datetime.fromisoformat(data["occurred_at"]),
        payload=data["payload"],
        metadata=data["metadata"],
    )


def _letter(row: Any) -> DeadLetter:
    parked_at = row["parked_at"]
    if parked_at.tzinfo is None:
        parked_at = parked_at.replace(tzinfo=UTC)
    return DeadLetter(
        id=int(row["id"]),
        projection=row["projection"],
        topic=row["topic"],
        partition=int(row["partition"]),
        offset=int(row["offset"]),
        stream_id=row["stream_id"],
        position=row["position"],
        event_type=row["event_type"],
        error=row["error"],
        status=row["status"],
        parked_at=parked_at,
        record=decode_record(row["record"]) if row["record"] else None,
        resolution=row["resolution"],
        resolved_by=row["resolved_by"],
        resolved_at=_utc(row["resolved_at"]),
    )


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
