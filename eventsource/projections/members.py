"""Who runs a projection right now: each worker's identity, partitions and heartbeat.

A running worker writes its row every few seconds, from its own thread
between two batches: a row whose heartbeat is fresh is a worker that is
alive and looping; a stale one is a worker that died (SIGKILL, a lost host)
or hangs. A worker that stops cleanly removes its row. `projection status`
reads these rows instead of trusting a stored "running" flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, and_, delete, select

from eventsource.bus.base import TopicPartition
from eventsource.identity import Identity
from eventsource.projections.tables import members
from eventsource.store.engine import upsert_into

members_table_name = members.name
HEARTBEAT_SECONDS = 5.0
# A heartbeat older than this many intervals means the worker is not looping.
STALE_AFTER = 3


@dataclass(frozen=True)
class Member:
    """One worker's row, as status reads it."""

    name: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    partitions: list[str]
    applied: int
    retrying_since: datetime | None
    retry_reason: str | None

    def fresh(self, now: datetime, heartbeat_seconds: float = HEARTBEAT_SECONDS) -> bool:
        return now - self.heartbeat_at <= timedelta(seconds=heartbeat_seconds * STALE_AFTER)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "host": self.host,
            "pid": self.pid,
            "started_at": self.started_at.isoformat(),
            "heartbeat_at": self.heartbeat_at.isoformat(),
            "partitions": self.partitions,
            "applied": self.applied,
            "retrying_since": self.retrying_since.isoformat() if self.retrying_since else None,
            "retry_reason": self.retry_reason,
        }


def beat(
    conn: Connection,
    projection: str,
    identity: Identity,
    *,
    partitions: list[TopicPartition],
    applied: int,
    retrying_since: datetime | None = None,
    retry_reason: str | None = None,
) -> None:
    """Write (or refresh) this worker's row."""
    values = {
        "projection": projection,
        "member": identity.name,
        "host": identity.host,
        "pid": identity.pid,
        "started_at": identity.started_at,
        "heartbeat_at": datetime.now(UTC),
        "partitions": orjson.dumps([str(tp) for tp in sorted(partitions)]).decode(),
        "applied": applied,
        "retrying_since": retrying_since,
        "retry_reason": retry_reason,
    }
    statement = upsert_into(conn, members).values(values)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[members.c.projection, members.c.member],
            set_={k: statement.excluded[k] for k in values if k not in ("projection", "member")},
        )
    )


def leave(conn: Connection, projection: str, identity: Identity) -> None:
    """This worker stopped: its row goes."""
    conn.execute(
        delete(members).where(
            and_(members.c.projection == projection, members.c.member == identity.name)
        )
    )


def prune(conn: Connection, projection: str, *, older_than: timedelta) -> None:
    """Forget rows of workers gone silent long ago (they died; status showed it)."""
    conn.execute(
        delete(members).where(
            and_(
                members.c.projection == projection,
                members.c.heartbeat_at < datetime.now(UTC) - older_than,
            )
        )
    )


def listing(conn: Connection, projection: str) -> list[Member]:
    rows = conn.execute(
        select(members).where(members.c.projection == projection).order_by(members.c.member)
    ).mappings()
    return [_member(row) for row in rows]


def _member(row: Any) -> Member:
    return Member(
        name=row["member"],
        host=row["host"],
        pid=int(row["pid"]),
        started_at=_utc(row["started_at"]),
        heartbeat_at=_utc(row["heartbeat_at"]),
        partitions=list(orjson.loads(row["partitions"])),
        applied=int(row["applied"]),
        retrying_since=_utc(row["retrying_since"]) if row["retrying_since"] else None,
        retry_reason=row["retry_reason"],
    )


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
