"""`LogConsumer` on event stores' own SQL logs: the embedded mode, no Kafka.

Topic `<context>.<aggregate type>` is the events of that aggregate type in the
store of that context, as a single partition whose offsets are global
positions. Positions follow commit order, so reading "after the last
position seen" never skips an event that committed late.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, SafeUUID

from sqlalchemy import Connection, func, select
from sqlalchemy.exc import DBAPIError

from eventsource.bus.base import (
    LogMessage,
    OnAssign,
    OnRevoke,
    PartitionLag,
    PositionFilter,
    StartAt,
    TopicPartition,
)
from eventsource.errors import ConfigurationError, StoreError
from eventsource.events.records import StoredEvent
from eventsource.store import schema
from eventsource.store.engine import read_transaction
from eventsource.store.eventstore import EventStore

log = logging.getLogger(__name__)


def split_topic(topic: str) -> tuple[str, str]:
    """`"orders.order"` -> `("orders", "order")`."""
    context, dot, aggregate_type = topic.partition(".")
    if not dot or not context or not aggregate_type:
        raise ConfigurationError(f"topic {topic!r} is not of the form <context>.<aggregate type>")
    return context, aggregate_type


class SqlLogConsumer:
    """Reads topics from the event stores of their contexts.

    `stores` maps context names to their `EventStore`; a topic of a context
    without a store is a configuration error naming what is missing.
    """

    def __init__(self, stores: Mapping[str, EventStore], *, poll_interval: float = 0.05) -> None:
        self.stores = dict(stores)
        self.poll_interval = poll_interval
        self._next: dict[TopicPartition, int] = {}
        self._filter = PositionFilter()
        self._turn = 0

    def _source(self, topic: str) -> tuple[EventStore, str]:
        context, aggregate_type = split_topic(topic)
        store = self.stores.get(context)
        if store is None:
            known = ", ".join(sorted(self.stores)) or "none"
            raise ConfigurationError(
                f"topic {topic!r} belongs to context {context!r}, whose event store is not"
                f" configured (known: {known}); set EVENTSOURCE_STORES to a JSON object"
                f' such as {{"{context}": "sqlite:///{context}.db"}}'
            )
        return store, aggregate_type

    def subscribe(self, topics: Iterable[str], on_assign: OnAssign, on_revoke: OnRevoke) -> None:
        partitions = [TopicPartition(topic, 0) for topic in topics]
        for tp in partitions:
            self._source(tp.topic)
        starts = on_assign(partitions)
        self.assign({tp: starts.get(tp, StartAt(0)) for tp in partitions})

    def assign(self, positions: Mapping[TopicPartition, StartAt]) -> None:
        for tp, start in positions.items():
            if tp.partition != 0:
                raise ConfigurationError(f"the embedded log has only partition 0, not {tp}")
            self._source(tp.topic)
            self.seek(tp, start)

    def seek(self, partition: TopicPartition, start: StartAt) -> None:
        self._next[partition] = max(start.offset, 0)
        self._filter.reset(partition, start.last_position)

    def assignment(self) -> list[TopicPartition]:
        return sorted(self._next)

    def partitions(self, topic: str) -> int:
        self._source(topic)
        return 1

    def poll(self, max_messages: int, timeout: float) -> list[LogMessage]:
        deadline = time.monotonic() + timeout
        while True:
            messages = self._read(max_messages)
            if messages or time.monotonic() >= deadline:
                return messages
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))

    def _read(self, max_messages: int) -> list[LogMessage]:
        partitions = self.assignment()
        if not partitions:
            return []
        out: list[LogMessage] = []
        # Take turns so that one busy topic cannot starve the others.
        self._turn = (self._turn + 1) % len(partitions)
        for tp in partitions[self._turn :] + partitions[: self._turn]:
            room = max_messages - len(out)
            if room <= 0:
                break
            store, aggregate_type = self._source(tp.topic)
            records = read_log(store, self._next[tp] - 1, room, aggregate_type)
            if not records:
                continue
            topic = tp.topic
            # Positions ascend within a read: if the first one is new, all are.
            if self._filter.accept_position(tp, records[0].position, records[0].position):
                self._filter.reset(tp, records[-1].position)
                out.extend([LogMessage(topic, 0, r.position, r) for r in records])
            else:
                for record in records[1:]:
                    message = LogMessage(topic, 0, record.position, record)
                    if self._filter.accept(message):
                        out.append(message)
            self._next[tp] = records[-1].position + 1
        return out

    def lag(self) -> dict[TopicPartition, PartitionLag]:
        out: dict[TopicPartition, PartitionLag] = {}
        for tp in self.assignment():
            store, aggregate_type = self._source(tp.topic)
            position = self._next[tp]
            events = schema.events
            statement = select(
                func.count(), func.coalesce(func.max(events.c.global_position), 0)
            ).where(events.c.aggregate_type == aggregate_type)
            with read_transaction(store.engine) as conn:
                _total, head = conn.execute(statement).one()
                remaining = conn.execute(
                    select(func.count()).where(
                        events.c.aggregate_type == aggregate_type,
                        events.c.global_position >= position,
                    )
                ).scalar_one()
            end = max(int(head) + 1, position) if remaining else position
            out[tp] = PartitionLag(position, end, int(remaining))
        return out

    def caught_up(self) -> bool:
        return all(p.lag == 0 for p in self.lag().values())

    def close(self) -> None:
        """Nothing to release: the stores belong to the caller."""

    def __enter__(self) -> SqlLogConsumer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# -- reading the log -----------------------------------------------------------------
#
# The hot path of a rebuild. `EventStore.read_log` returns the same records,
# but through SQLAlchemy's row processing, which parses each row's UUID and
# time in Python; here the driver's own tuples are turned into records
# directly (`fromisoformat` and `UUID` of SQLite's text, PostgreSQL's native
# values as they come).

_COLUMNS = ", ".join(c.name for c in schema.EVENT_COLUMNS)
_READ_LOG = (
    f"SELECT {_COLUMNS} FROM events WHERE global_position > {{p}} AND aggregate_type = {{p}}"
    " ORDER BY global_position LIMIT {p}"
)


def read_log(store: EventStore, after: int, limit: int, aggregate_type: str) -> list[StoredEvent]:
    """Up to `limit` records of `aggregate_type` above position `after`, in order
    (what `store.read_log(after, limit, aggregate_types=[aggregate_type])` returns)."""
    try:
        with read_transaction(store.engine) as conn:
            rows = _fetch(conn, (after, aggregate_type, limit))
    except DBAPIError as exc:
        raise StoreError(f"read from {store!r} failed: {exc.orig}") from exc
    return [_record(row) for row in rows]


def _fetch(conn: Connection, params: tuple[int, str, int]) -> Sequence[Sequence[Any]]:
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    result = conn.exec_driver_sql(_READ_LOG.format(p=marker), params)
    try:
        # The driver's tuples: no `Row` objects, no result processing.
        rows: Sequence[Sequence[Any]] = result.cursor.fetchall() if result.cursor else []
    except conn.dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(None, params, exc, conn.dialect.loaded_dbapi.Error) from exc
    finally:
        result.close()
    return rows


def _uuid(text: str) -> UUID:
    """`UUID(text)` for the 32 hex digits SQLite holds, without `UUID.__init__`'s
    parsing of every accepted spelling (a third of reading a row)."""
    value = UUID.__new__(UUID)
    object.__setattr__(value, "int", int(text, 16))
    object.__setattr__(value, "is_safe", SafeUUID.unknown)
    return value


def _record(row: Sequence[Any]) -> StoredEvent:
    event_id, occurred_at = row[7], row[8]
    if not isinstance(event_id, UUID):  # SQLite: text; PostgreSQL: a UUID already
        event_id = _uuid(event_id) if len(event_id) == 32 else UUID(event_id)
    if isinstance(occurred_at, str):  # SQLite: text, always UTC (the store only writes UTC)
        occurred_at = datetime.fromisoformat(occurred_at + "+00:00")
    elif occurred_at.tzinfo is None:
        occurred_at = occurred_at.replace(tzinfo=UTC)
    elif occurred_at.tzinfo is not UTC:  # PostgreSQL answers in the session's zone
        occurred_at = occurred_at.astimezone(UTC)
    return StoredEvent(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        event_id,
        occurred_at,
        row[9],
        row[10],
    )
