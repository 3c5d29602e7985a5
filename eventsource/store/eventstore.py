"""The SQL event store: append with optimistic concurrency, read streams and the log."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, func, select, tuple_
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, IntegrityError

from eventsource.errors import ConcurrencyError, StoreError
from eventsource.events.base import Event
from eventsource.events.codec import DEFAULT_MAX_EVENT_BYTES, EventCodec
from eventsource.events.personal import SubjectKey
from eventsource.events.records import StoredEvent
from eventsource.events.registry import EventRegistry
from eventsource.settings import Settings, check_context
from eventsource.store import schema
from eventsource.store.driver import DriverConnection, driver_transaction
from eventsource.store.engine import (
    SqliteSync,
    create_engine,
    fetch_raw,
    read_transaction,
    write_connection,
    write_transaction,
)
from eventsource.store.keys import KeyDatabase, StoreKeys
from eventsource.store.migrate import Branch, upgrade_schema
from eventsource.store.statements import (
    _record,
    insert_on,
    load_snapshot_on,
    read_stream_on,
    save_snapshot_on,
)

if TYPE_CHECKING:
    from eventsource.store.forget import Forgotten

log = logging.getLogger(__name__)


class EventStore:
    """One bounded context's events in one SQL database.

    ::

        store = EventStore("sqlite:///orders.db", context="orders")
        store.create_schema()

    `url` is a SQLAlchemy URL or `Engine` (default: `EVENTSOURCE_DATABASE_URL`),
    `context` names the bounded context and prefixes its topics (default:
    `EVENTSOURCE_CONTEXT`, else `default`). Events above `max_event_bytes`
    encoded are refused.

    Personal data (`PersonalData` fields) is sealed with keys in this
    store's `personal_data_keys` table; `forget(subject)` deletes one.
    `keys` maps other contexts to the databases where their keys are read,
    for events of theirs this store's codec decodes (default:
    `EVENTSOURCE_KEYS`, then `EVENTSOURCE_STORES`); `keys_cache_seconds`
    is how long a key read is trusted (default:
    `EVENTSOURCE_KEYS_CACHE_SECONDS`, else 60).
    """

    def __init__(
        self,
        url: str | URL | Engine | None = None,
        *,
        context: str | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        registry: EventRegistry | None = None,
        sqlite_synchronous: SqliteSync = "FULL",
        keys: Mapping[str, KeyDatabase] | None = None,
        keys_cache_seconds: float | None = None,
    ) -> None:
        if url is None or context is None:
            settings = Settings()
            url = url if url is not None else settings.database_url
            context = context if context is not None else settings.context
        self.context = check_context(context)
        self.engine: Engine = create_engine(url, sqlite_synchronous=sqlite_synchronous)
        self.keys = StoreKeys(
            self.engine, self.context, others=keys, cache_seconds=keys_cache_seconds
        )
        self.codec = EventCodec(registry, max_event_bytes=max_event_bytes, keys=self.keys)
        self._owns_engine = not isinstance(url, Engine)
        self._identity: str | None = None

    def __repr__(self) -> str:
        url = self.engine.url.render_as_string(hide_password=True)
        return f"EventStore({url!r}, context={self.context!r})"

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection pool (if the store created the engine)."""
        self.keys.close()
        if self._owns_engine:
            self.engine.dispose()

    @property
    def is_sqlite(self) -> bool:
        """Whether the store's database is SQLite."""
        return self.engine.dialect.name == "sqlite"

    def topic_for(self, aggregate_type: str) -> str:
        """The log topic that carries this context's events of `aggregate_type`."""
        return f"{self.context}.{aggregate_type}"

    # -- schema ----------------------------------------------------------------

    def create_schema(self, *branches: Branch) -> None:
        """Create or upgrade the framework's tables (idempotent).

        Runs the same Alembic migrations as `eventsource db upgrade`: with no
        branch named, both the event store's and the projection runtime's,
        since a context's database usually also holds its views and their
        positions. `create_schema("store")` makes only events and snapshots,
        for a database that only records events.
        """
        upgrade_schema(self.engine, *branches)

    # -- personal data ---------------------------------------------------------

    def forget(self, subject: str) -> Forgotten:
        """Erase a subject's personal data from this context: delete its key.

        In one transaction: the subject's key is deleted, so that every field
        sealed with it (`PersonalData`) decodes to its placeholder from now
        on, wherever a copy of the event is (the events table, Kafka,
        backups), and a `PersonalDataForgotten` notice is recorded (topic
        `<context>.personal_data`) for projections that copied the data.
        Other processes see the key gone within their key cache time
        (`keys_cache_seconds`), or at once when they read the notice.

        A subject without a key here is left alone (`Forgotten.keys == 0`).
        Each context that seals the subject's data forgets it in its own store.
        """
        from eventsource.store.forget import forget

        return forget(self, subject)

    # -- writing ---------------------------------------------------------------

    def append(self, events: Sequence[Event], *, connection: Connection | None = None) -> list[int]:
        """Append recorded events atomically; return their global positions.

        Each event's `version` is checked against its stream: if another writer
        already stored that version, nothing is written and `ConcurrencyError`
        names the stream. Pass `connection` (from `transaction()`) to append as
        part of a larger transaction.
        """
        records = [self.codec.encode(event) for event in events]
        if not self.keys.unsettled:
            return self.append_records(records, connection=connection)
        # A subject's first key is written with the first events sealed with it.
        if connection is not None:
            records, _ = self.write_keys(DriverConnection.of(connection), events, records)
            return insert_on(DriverConnection.of(connection), records)
        try:
            with driver_transaction(self.engine, write=True) as conn:
                records, written = self.write_keys(conn, events, records)
                positions = insert_on(conn, records)
        except IntegrityError as exc:
            raise self._conflict(records, exc) from exc
        except DBAPIError as exc:
            raise StoreError(f"append to {self!r} failed: {exc.orig}") from exc
        self.keys.committed(written)
        return positions

    def write_keys(
        self, conn: DriverConnection, events: Sequence[Event], records: list[StoredEvent]
    ) -> tuple[list[StoredEvent], dict[str, SubjectKey]]:
        """Write the subjects' keys made for `records`, in `conn`'s transaction.

        Returns the records to insert (sealed again if another writer's key
        won one of their subjects) and the keys written, which the
        transaction's owner hands to `keys.committed` once it commits.
        """
        reseal, written = self.keys.write_pending(conn, records)
        if reseal:
            records = [self.codec.encode(event) for event in events]
        return records, written

    def append_records(
        self, records: Sequence[StoredEvent], *, connection: Connection | None = None
    ) -> list[int]:
        """Append already-encoded records (see `append`).

        Records holding personal data must come from `append` or a
        `Repository`, which write the subjects' keys with them.
        """
        if not records:
            return []
        if connection is not None:
            return insert_on(DriverConnection.of(connection), records)
        try:
            with driver_transaction(self.engine, write=True) as conn:
                return insert_on(conn, records)
        except IntegrityError as exc:
            raise self._conflict(records, exc) from exc
        except DBAPIError as exc:
            raise StoreError(f"append to {self!r} failed: {exc.orig}") from exc

    def _conflict(self, records: Sequence[StoredEvent], exc: IntegrityError) -> Exception:
        """Name the stream another writer got to first (the transaction is already gone)."""
        first_new: dict[str, int] = {}
        for record in records:
            first_new.setdefault(record.stream_id, record.version)
        current = self.stream_versions(first_new)
        for stream_id, version in first_new.items():
            actual = current.get(stream_id, 0)
            if actual >= version:
                return ConcurrencyError(stream_id, version - 1, actual)
        return StoreError(f"append to {self!r} violated a constraint: {exc.orig}")

    def transaction(self, *, lock_first: bool = True) -> AbstractContextManager[Connection]:
        """A write transaction (context manager yielding a `Connection`).

        Appends made through it get global positions in commit order.
        """
        return write_transaction(self.engine, lock_first=lock_first)

    def write_connection(self) -> AbstractContextManager[Connection]:
        """A connection whose transactions take the write lock (SQLite) when they begin."""
        return write_connection(self.engine)

    def conflict_error(self, records: Sequence[StoredEvent], exc: IntegrityError) -> Exception:
        """The error to raise for an `IntegrityError` from an append in a caller's transaction."""
        return self._conflict(records, exc)

    # -- reading ---------------------------------------------------------------

    def read_stream(
        self, stream_id: str, *, after_version: int = 0, connection: Connection | None = None
    ) -> list[StoredEvent]:
        """The stream's records with version above `after_version`, in order."""
        try:
            if connection is not None:
                return read_stream_on(DriverConnection.of(connection), stream_id, after_version)
            with driver_transaction(self.engine, write=False) as conn:
                return read_stream_on(conn, stream_id, after_version)
        except DBAPIError as exc:
            raise StoreError(f"read from {self!r} failed: {exc.orig}") from exc

    def read_log(
        self,
        after_position: int = 0,
        limit: int = 1000,
        *,
        aggregate_types: Iterable[str] | None = None,
        connection: Connection | None = None,
    ) -> list[StoredEvent]:
        """Up to `limit` records with global position above `after_position`, in order.

        Positions follow commit order but are not contiguous (a rolled-back
        append leaves a gap), so readers continue from the last position seen.
        """
        statement = select(*schema.EVENT_COLUMNS).where(
            schema.events.c.global_position > after_position
        )
        if aggregate_types is not None:
            statement = statement.where(schema.events.c.aggregate_type.in_(list(aggregate_types)))
        statement = statement.order_by(schema.events.c.global_position).limit(limit)
        return self._select(statement, connection)

    def read_events(self, after_position: int = 0, limit: int = 1000) -> list[Event]:
        """Like `read_log`, decoded."""
        return [self.codec.decode(record) for record in self.read_log(after_position, limit)]

    def head_position(
        self, *, aggregate_types: Iterable[str] | None = None, connection: Connection | None = None
    ) -> int:
        """The highest global position stored (0 when empty)."""
        statement = select(func.coalesce(func.max(schema.events.c.global_position), 0))
        if aggregate_types is not None:
            statement = statement.where(schema.events.c.aggregate_type.in_(list(aggregate_types)))
        if connection is not None:
            return int(connection.execute(statement).scalar_one())
        with read_transaction(self.engine) as conn:
            return int(conn.execute(statement).scalar_one())

    def identity(self) -> str:
        """This store's id: made at random with its tables, stamped by the relay
        on every message, so that topics know which store wrote them."""
        if self._identity is None:
            with read_transaction(self.engine) as conn:
                found = conn.execute(select(schema.store_identity.c.id)).scalar()
            if found is None:
                raise StoreError(
                    f"{self!r} has no identity: its tables are older than this version;"
                    " run `eventsource db upgrade`"
                )
            self._identity = str(found)
        return self._identity

    def adopt_identity(self, identity: str) -> None:
        """Take another store's identity: this database now carries the context
        whose topics that store wrote (a deliberate move to a new database;
        see the deployment guide)."""
        with self.transaction() as conn:
            conn.execute(schema.store_identity.delete())
            conn.execute(
                schema.store_identity.insert().values(id=identity, created_at=datetime.now(UTC))
            )
        self._identity = identity

    def stream_versions(
        self, stream_ids: Iterable[str], *, connection: Connection | None = None
    ) -> dict[str, int]:
        """The current version of each stream that has events."""
        ids = list(stream_ids)
        if not ids:
            return {}
        statement = (
            select(schema.events.c.stream_id, func.max(schema.events.c.version))
            .where(schema.events.c.stream_id.in_(ids))
            .group_by(schema.events.c.stream_id)
        )
        if connection is not None:
            return {row[0]: int(row[1]) for row in connection.execute(statement)}
        with read_transaction(self.engine) as conn:
            return {row[0]: int(row[1]) for row in conn.execute(statement)}

    def _select(self, statement: Any, connection: Connection | None) -> list[StoredEvent]:
        try:
            if connection is not None:
                rows = fetch_raw(connection, statement)
            else:
                with read_transaction(self.engine) as conn:
                    rows = fetch_raw(conn, statement)
        except DBAPIError as exc:
            raise StoreError(f"read from {self!r} failed: {exc.orig}") from exc
        return [_record(row) for row in rows]

    # -- snapshots -------------------------------------------------------------

    def load_snapshot(
        self, stream_id: str, *, connection: Connection | None = None
    ) -> tuple[int, str, str] | None:
        """`(version, fingerprint, state)` of the stream's latest snapshot, or None."""
        if connection is not None:
            return load_snapshot_on(DriverConnection.of(connection), stream_id)
        with driver_transaction(self.engine, write=False) as conn:
            return load_snapshot_on(conn, stream_id)

    def save_snapshot(
        self,
        connection: Connection,
        *,
        stream_id: str,
        aggregate_type: str,
        version: int,
        fingerprint: str,
        state: str,
    ) -> None:
        """Replace the stream's snapshot, within the caller's transaction."""
        save_snapshot_on(
            DriverConnection.of(connection),
            stream_id=stream_id,
            aggregate_type=aggregate_type,
            version=version,
            fingerprint=fingerprint,
            state=state,
        )

    def has_events(self, keys: Iterable[tuple[str, int]]) -> set[tuple[str, int]]:
        """Which `(stream_id, version)` pairs are stored (for tests and repair tools)."""
        pairs = list(keys)
        if not pairs:
            return set()
        statement = select(schema.events.c.stream_id, schema.events.c.version).where(
            tuple_(schema.events.c.stream_id, schema.events.c.version).in_(pairs)
        )
        with read_transaction(self.engine) as conn:
            return {(row[0], int(row[1])) for row in conn.execute(statement)}


# Alembic keeps its running context in module globals: one migration at a
# time per process. Branches already at head on an engine are not migrated again.
