"""One reading of everything the page shows, through the framework's read APIs.

Each function returns plain data (dicts, lists, dataclasses, datetimes) that
`orjson` serialises as it is. Event payloads are left out unless asked for:
they are business data (addresses, card numbers) that an operator's page
rarely needs and should not spread.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, inspect

from eventsource.bus.relay_status import relay_status
from eventsource.dashboard.sources import Sources, Watched, WatchedTransform
from eventsource.events.codec import metadata_ids
from eventsource.events.records import StoredEvent
from eventsource.projections import deadletters, deadlines
from eventsource.projections.status import ConsumerStatus, status
from eventsource.projections.tables import dead_letters as dead_letters_table
from eventsource.projections.tables import deadlines as deadlines_table
from eventsource.store.engine import read_transaction
from eventsource.store.eventstore import EventStore
from eventsource.streams.status import TransformStatus, kafka_status

PAYLOAD_CHARS = 2000


def consumer_status(sources: Sources, w: Watched) -> ConsumerStatus:
    """`projection status` of `w`: state, workers, positions and lag (in events too)."""
    return status(
        w.cls,
        sources.stores[w.context].engine,
        sources.log(w),
        stores=sources.stores,
        heartbeat_seconds=sources.settings.heartbeat_seconds,
    )


def kafka_transform_status(sources: Sources, w: WatchedTransform) -> TransformStatus:
    """`transform status` of a transform on Kafka: its group, members, committed offsets, lag."""
    from eventsource.bus.config import KafkaConfig

    return kafka_status(w.transform, KafkaConfig.from_settings(sources.settings))


def kafka_transform_dict(found: TransformStatus) -> dict[str, Any]:
    """`found` in the shape of a consumer's status, for the page: the group's
    members are Kafka client ids (no heartbeat rows), positions are committed offsets."""
    out = found.as_dict()
    out["group_state"] = out.pop("state")
    out["group_members"] = out.pop("members")
    out["lag_events"] = None
    for p in out["partitions"]:
        p["offset"] = p.pop("committed")
    return out


def status_dict(found: ConsumerStatus) -> dict[str, Any]:
    out = found.as_dict()
    out["dead_letter_counts"] = out.pop("dead_letters")
    return out


def dead_letters(
    store: EventStore, name: str, *, limit: int, payloads: bool = False
) -> list[dict[str, Any]]:
    """The newest dead letters of `name`, any status, each with its event."""
    with read_transaction(store.engine) as conn:
        if not _has(conn, dead_letters_table.name):
            return []
        letters = deadletters.listing(conn, name, limit=limit)
    out = []
    for letter in letters:
        item = letter.as_dict()
        item["event"] = event_dict(store, letter.record, payloads) if letter.record else None
        out.append(item)
    return out


def pending_deadlines(store: EventStore, owner: str, *, limit: int) -> dict[str, Any]:
    """How many deadlines of `owner` are pending, and the first `limit` of them (soonest first)."""
    with read_transaction(store.engine) as conn:
        found = deadlines.pending(conn, owner) if _has(conn, deadlines_table.name) else []
    items = [
        {
            "name": d.name,
            "key": d.key,
            "due_at": d.due_at,
            "attempts": d.attempts,
            "correlation_id": d.correlation_id,
        }
        for d in found[:limit]
    ]
    return {"count": len(found), "items": items}


def recent_events(sources: Sources, *, limit: int, payloads: bool = False) -> list[dict[str, Any]]:
    """The last `limit` events of every store, newest first."""
    found: list[dict[str, Any]] = []
    for store in sources.stores.values():
        head = store.head_position()
        # Positions have gaps (rolled-back appends), so this may bring fewer
        # than `limit`; never more, and never a scan of the whole log.
        records = store.read_log(after_position=max(0, head - limit), limit=limit)
        found.extend(event_dict(store, r, payloads) for r in records)
    found.sort(key=lambda e: (e["occurred_at"], e["position"]), reverse=True)
    return found[:limit]


def event_dict(store: EventStore, record: StoredEvent, payloads: bool) -> dict[str, Any]:
    correlation, causation = _ids(record.metadata)
    out: dict[str, Any] = {
        "context": store.context,
        "topic": store.topic_for(record.aggregate_type),
        "position": record.position,
        "event_type": record.event_type,
        "aggregate_type": record.aggregate_type,
        "aggregate_id": record.aggregate_id,
        "version": record.version,
        "event_id": record.event_id,
        "occurred_at": record.occurred_at,
        "correlation_id": correlation,
        "causation_id": causation,
    }
    if payloads:
        out["payload"] = record.payload[:PAYLOAD_CHARS]
    return out


def relay(sources: Sources, context: str) -> dict[str, Any] | None:
    """The relay's state, head, what Kafka holds and the backlog (None in embedded mode)."""
    relayer = sources.relay(context)
    if relayer is None:
        return None
    # Once, without the relay's retries: an outage shows on the page instead
    # of holding the sampler until Kafka is back.
    found = relay_status(
        sources.stores[context],
        relayer.tails(),
        heartbeat_seconds=sources.settings.heartbeat_seconds,
    )
    return found.as_dict()


def _ids(metadata: str) -> tuple[str | None, str | None]:
    try:
        return metadata_ids(metadata)
    except ValueError:
        return None, None  # unreadable metadata: the event still shows


def _has(conn: Connection, table: str) -> bool:
    return bool(inspect(conn).has_table(table))
