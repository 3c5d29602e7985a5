"""Forgetting a subject: its key goes, and with it every copy of its personal data.

`EventStore.forget(subject)` runs `forget` in one write transaction:

1. Delete the subject's key from `personal_data_keys`. Every value sealed
   with it, in the events table, on Kafka, in backups, can no longer be
   opened; it decodes to its placeholder.
2. Record a `PersonalDataForgotten` notice on the stream
   `personal_data:<subject>`, so that projections (in any context) can drop
   what they copied, and consumers drop the keys they cached.

Snapshots need nothing: an aggregate that applies personal data is never
snapshotted (`Repository` refuses it), since its state holds the plaintext.

On SQLite the deleted key is overwritten in the file (`secure_delete`) and
the write-ahead log is emptied into it afterwards, so the key's bytes are
gone from both files.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.exc import DBAPIError

from eventsource.errors import InvalidAggregateId, StoreError
from eventsource.events.codec import stamp
from eventsource.events.notices import NOTICE_AGGREGATE_TYPE, PersonalDataForgotten
from eventsource.events.personal import check_subject
from eventsource.events.records import stream_id_for
from eventsource.events.uuids import uuid7
from eventsource.store import schema
from eventsource.store.driver import DriverConnection, compiled, driver_transaction
from eventsource.store.keys import take_commit_order_lock

if TYPE_CHECKING:
    from eventsource.store.eventstore import EventStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What `EventStore.forget` deleted.

    `keys` is 0 when the subject had no key (nothing of it was sealed here,
    or it was forgotten before): then nothing changed and `position` is None.
    Otherwise `position` is the global position of the `PersonalDataForgotten`
    notice (for `wait_for`).
    """

    subject: str
    keys: int
    position: int | None


def forget(store: EventStore, subject: str) -> Forgotten:
    """Delete `subject`'s key and record the notice."""
    problem = check_subject(subject)
    if problem is not None:
        raise InvalidAggregateId(f"a subject to forget {problem}")
    try:
        with driver_transaction(store.engine, write=True) as conn:
            forgotten = _forget_on(store, conn, subject)
    except DBAPIError as exc:
        raise StoreError(f"forgetting a subject in {store!r} failed: {exc.orig}") from exc
    if forgotten.keys:
        store.keys.forgotten(subject)
        if store.is_sqlite:
            _checkpoint(store)
        log.info(
            "forgot a subject in context %r: notice at position %s",
            store.context,
            forgotten.position,
        )
    return forgotten


def _forget_on(store: EventStore, conn: DriverConnection, subject: str) -> Forgotten:
    from eventsource.store.statements import insert_on

    # Like every appender, before any row is touched: no deadlock with a
    # writer that is storing this subject's first key.
    take_commit_order_lock(conn)
    if conn.is_sqlite:
        # Zero the deleted row's bytes in the page, rather than only unlink it.
        conn.run("PRAGMA secure_delete=ON", ())
    try:
        key_ids = store.keys.delete(conn, subject)
    finally:
        if conn.is_sqlite:
            conn.run("PRAGMA secure_delete=OFF", ())
    if not key_ids:
        return Forgotten(subject, keys=0, position=None)
    record = store.codec.encode(_notice(conn, subject))
    [position] = insert_on(conn, [record])
    return Forgotten(subject, keys=len(key_ids), position=position)


def _notice(conn: DriverConnection, subject: str) -> PersonalDataForgotten:
    """The next `PersonalDataForgotten` of the subject's notice stream, stamped."""
    stream_id = stream_id_for(NOTICE_AGGREGATE_TYPE, subject)
    rows = conn.fetchall(
        compiled(conn.dialect, "pd_notice_version", _stream_version), {"stream_id": stream_id}
    )
    event = PersonalDataForgotten()
    event_id = uuid7()
    stamp(
        event,
        event_id=event_id,
        aggregate_id=subject,
        aggregate_type=NOTICE_AGGREGATE_TYPE,
        version=int(rows[0][0] or 0) + 1,
        position=0,
        occurred_at=datetime.now(UTC),
        correlation_id=event_id,
        causation_id=None,
    )
    return event


def _stream_version(_dialect: str) -> Select[Any]:
    events = schema.events
    return select(func.max(events.c.version)).where(events.c.stream_id == bindparam("stream_id"))


def _checkpoint(store: EventStore) -> None:
    """Move the write-ahead log into the database file and empty it: the log
    still holds pages from before the key was overwritten. Best effort: a
    reader in the middle of a transaction leaves it for the next checkpoint."""
    fairy = store.engine.raw_connection()
    try:
        with suppress(Exception):
            busy = fairy.dbapi_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()  # type: ignore[union-attr]
            if busy and busy[0]:
                log.warning("the write-ahead log of %r is in use; it is emptied later", store)
    finally:
        fairy.close()
