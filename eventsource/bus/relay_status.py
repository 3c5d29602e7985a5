"""The relay's liveness and what `eventsource relay status` reports.

A running relay writes a heartbeat row in its store's database every few
seconds (`relay_heartbeats`); status compares the store's head with what
Kafka holds (the last committed event of each partition) and counts the
backlog in events.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, func, select

from eventsource.identity import Identity
from eventsource.retry import Outage
from eventsource.store import schema
from eventsource.store.engine import read_transaction, upsert_into
from eventsource.store.eventstore import EventStore

HEARTBEAT_SECONDS = 5.0
STALE_AFTER = 3


@dataclass(frozen=True)
class RelayMember:
    name: str
    host: str
    pid: int
    transactional_id: str
    started_at: datetime
    heartbeat_at: datetime
    position: int
    relayed: int
    retrying_since: datetime | None
    retry_reason: str | None
    fresh: bool


@dataclass
class RelayStatus:
    """The store's head, what Kafka holds of it, the backlog and the relays.

    `status` is `running` while a relay's heartbeat is fresh, `unresponsive`
    when the relays' heartbeats went stale, else `not running`.
    """

    context: str
    store_id: str
    head: int
    on_kafka: int
    backlog: int  # events stored beyond what Kafka holds
    status: str
    relays: list[RelayMember] = field(default_factory=list)
    foreign_stores: list[str] = field(default_factory=list)  # other stores' ids on the topics
    retrying: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def beat(
    conn: Connection,
    identity: Identity,
    *,
    transactional_id: str,
    position: int,
    relayed: int,
    outage: Outage | None,
) -> None:
    """Write (or refresh) this relay's heartbeat row."""
    table = schema.relay_heartbeats
    values = {
        "member": identity.name,
        "host": identity.host,
        "pid": identity.pid,
        "transactional_id": transactional_id,
        "started_at": identity.started_at,
        "heartbeat_at": datetime.now(UTC),
        "position": position,
        "relayed": relayed,
        "retrying_since": outage.since if outage is not None and outage.active else None,
        "retry_reason": outage.reason if outage is not None and outage.active else None,
    }
    statement = upsert_into(conn, table).values(values)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[table.c.member],
            set_={k: statement.excluded[k] for k in values if k != "member"},
        )
    )


def leave(conn: Connection, identity: Identity) -> None:
    table = schema.relay_heartbeats
    conn.execute(delete(table).where(table.c.member == identity.name))


def relay_status(
    store: EventStore,
    tails: list[tuple[int, str | None]],
    *,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
) -> RelayStatus:
    """Status from the store and the topics' `tails` (`Relay.tails()`)."""
    identity = store.identity()
    on_kafka = max((position for position, _ in tails), default=0)
    events = schema.events
    now = datetime.now(UTC)
    with read_transaction(store.engine) as conn:
        head = store.head_position(connection=conn)
        backlog = int(
            conn.execute(
                select(func.count()).where(events.c.global_position > on_kafka)
            ).scalar_one()
        )
        rows = conn.execute(select(schema.relay_heartbeats)).mappings().all()
    window = timedelta(seconds=heartbeat_seconds * STALE_AFTER)
    relays = [_member(row, now, window) for row in rows]
    live = [r for r in relays if r.fresh]
    state = "running" if live else "unresponsive" if relays else "not running"
    waiting = [r for r in live if r.retrying_since is not None]
    retrying = None
    if waiting:
        first = min(waiting, key=lambda r: r.retrying_since or now)
        since = (first.retrying_since or now).isoformat(timespec="seconds")
        retrying = f"retrying since {since}: {first.retry_reason}"
    return RelayStatus(
        context=store.context,
        store_id=identity,
        head=head,
        on_kafka=on_kafka,
        backlog=backlog,
        status=state,
        relays=relays,
        foreign_stores=sorted({s for _, s in tails if s is not None and s != identity}),
        retrying=retrying,
    )


def _member(row: Any, now: datetime, window: timedelta) -> RelayMember:
    heartbeat = _utc(row["heartbeat_at"])
    return RelayMember(
        name=row["member"],
        host=row["host"],
        pid=int(row["pid"]),
        transactional_id=row["transactional_id"],
        started_at=_utc(row["started_at"]),
        heartbeat_at=heartbeat,
        position=int(row["position"]),
        relayed=int(row["relayed"]),
        retrying_since=_utc(row["retrying_since"]) if row["retrying_since"] else None,
        retry_reason=row["retry_reason"],
        fresh=now - heartbeat <= window,
    )


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
