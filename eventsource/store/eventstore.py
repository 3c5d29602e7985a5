"""The SQL event store: append with optimistic concurrency, read streams and the log."""

from __future__ import annotations

import importlib.util
import logging
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from sqlalchemy import Connection, Engine, Insert, Select, bindparam, func, select, tuple_
from sqlalchemy.dialects.postgresql import dml as pg_dml
from sqlalchemy.dialects.sqlite import dml as sqlite_dml
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, IntegrityError

from eventsource.errors import ConcurrencyError, ConfigurationError, StoreError
from eventsource.events.base import Event
from eventsource.events.codec import DEFAULT_MAX_EVENT_BYTES, EventCodec
from eventsource.events.personal import SubjectKey
from eventsource.events.records import StoredEvent, stream_id_for
from eventsource.events.registry import EventRegistry
from eventsource.events.uuids import uuid_from_hex
from eventsource.settings import Settings, check_context
from eventsource.store import schema
from eventsource.store.driver import DriverConnection, compiled, driver_transaction
from eventsource.store.engine import (
    SqliteSync,
    create_engine,
    fetch_raw,
    read_transaction,
    write_connection,
    write_transaction,
)
from eventsource.store.keys import KeyDatabase, StoreKeys

if TYPE_CHECKING:
    from eventsource.store.forget import Forgotten

log = logging.getLogger(__name__)

# The framework's Alembic branches: the event store's tables, and the projection
# runtime's (positions, projection state, dead letters, deadlines).
Branch = Literal["store", "runtime"]
BRANCHES: tuple[Branch, ...] = ("store", "runtime")


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
_migration_lock = threading.Lock()
_migrated: weakref.WeakKeyDictionary[Engine, set[Branch]] = weakref.WeakKeyDictionary()


def upgrade_schema(bind: str | URL | Engine, *branches: Branch) -> None:
    """Upgrade the framework's tables on `bind` to the latest revision (idempotent).

    `branches` picks the Alembic branches: `"store"` (events, snapshots),
    `"runtime"` (projection positions and state, dead letters, deadlines);
    none named means both, as `eventsource db upgrade` does.
    """
    wanted = set(branches or BRANCHES)
    if not wanted <= set(BRANCHES):
        raise ConfigurationError(f"unknown schema branches {sorted(wanted - set(BRANCHES))}")
    engine = create_engine(bind)
    try:
        _upgrade(engine, wanted)
    finally:
        if not isinstance(bind, Engine):
            engine.dispose()


def _upgrade(engine: Engine, wanted: set[Branch]) -> None:
    from alembic import command
    from alembic.config import Config

    with _migration_lock:
        done = _migrated.setdefault(engine, set())
        missing = wanted - done
        if not missing:
            return
        # One upgrade to every head at once, or each branch on its own.
        targets = ["heads"] if missing == set(BRANCHES) else [f"{b}@head" for b in sorted(missing)]
        config = Config()
        config.set_main_option("script_location", str(migrations_folder()))
        with write_connection(engine) as connection:
            config.attributes["connection"] = connection
            for target in targets:
                try:
                    command.upgrade(config, target)
                except DBAPIError as exc:
                    raise StoreError(f"migrating {engine.url!r} failed: {exc.orig}") from exc
                if connection.in_transaction():
                    connection.commit()
        done.update(missing)


def migrations_folder() -> Path:
    """The Alembic environment (`migrations/` in the repository, installed as
    `eventsource.migrations`)."""
    spec = importlib.util.find_spec("eventsource.migrations")
    if spec is None or not spec.submodule_search_locations:
        raise StoreError("the eventsource.migrations package is not installed")
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / "env.py").is_file():
        # A checkout updated from one that held the environment inside the
        # package keeps an `eventsource/migrations/__pycache__`, which Python
        # imports as an empty namespace package ahead of the mapped folder.
        raise StoreError(f"{folder} holds no Alembic environment: remove it (a leftover)")
    return folder


# -- inserting a batch ---------------------------------------------------------------
#
# A batch is inserted so that its positions ascend in the order of the records
# (a stream's versions appear in the log in order) and the positions come back
# in that order. SQLAlchemy's `returning(sort_by_parameter_order=True)` does
# both, but slowly: on SQLite it runs one INSERT ... RETURNING per row, in
# Python; on PostgreSQL it sends one statement with ten bind parameters per
# row, which psycopg parses anew on every call.

_ARRAY_TYPES = {
    "stream_id": "varchar",
    "aggregate_id": "varchar",
    "aggregate_type": "varchar",
    "version": "integer",
    "event_type": "varchar",
    "schema_version": "integer",
    "event_id": "uuid",
    "occurred_at": "timestamptz",
    "payload": "text",
    "metadata": "text",
}
_COLUMNS = ", ".join(_ARRAY_TYPES)
_COLUMN_NAMES = tuple(_ARRAY_TYPES)
# psycopg's binary format (`%(name)b`) dumps a list in C; its text format
# escapes every string of an array in Python, ten times slower.
_INSERT_UNNEST = (
    f"INSERT INTO events ({_COLUMNS}) SELECT {_COLUMNS} FROM unnest("
    + ", ".join(f"%({name})b::{kind}[]" for name, kind in _ARRAY_TYPES.items())
    + f") WITH ORDINALITY AS batch({_COLUMNS}, n) ORDER BY n RETURNING global_position"
)


def _insert_statement(_dialect: str, *, returning: bool = True) -> Insert:
    statement = schema.events.insert().values({name: bindparam(name) for name in _COLUMN_NAMES})
    return statement.returning(schema.events.c.global_position) if returning else statement


def _insert_rows_statement(dialect: str) -> Insert:
    return _insert_statement(dialect, returning=False)


def _read_stream_statement(_dialect: str) -> Select[Any]:
    return (
        select(*schema.EVENT_COLUMNS)
        .where(schema.events.c.stream_id == bindparam("stream_id"))
        .where(schema.events.c.version > bindparam("after_version"))
        .order_by(schema.events.c.version)
    )


_STREAM_COLUMNS = (
    schema.events.c.global_position,
    schema.events.c.version,
    schema.events.c.event_type,
    schema.events.c.schema_version,
    schema.events.c.event_id,
    schema.events.c.occurred_at,
    schema.events.c.payload,
    schema.events.c.metadata,
)


def _load_stream_statement(_dialect: str) -> Select[Any]:
    return (
        select(*_STREAM_COLUMNS)
        .where(schema.events.c.stream_id == bindparam("stream_id"))
        .where(schema.events.c.version > bindparam("after_version"))
        .order_by(schema.events.c.version)
    )


def _load_snapshot_statement(_dialect: str) -> Select[Any]:
    columns = schema.snapshots.c
    return select(columns.version, columns.fingerprint, columns.state).where(
        columns.stream_id == bindparam("stream_id")
    )


_SNAPSHOT_COLUMNS = ("stream_id", "aggregate_type", "version", "fingerprint", "state", "taken_at")


def _save_snapshot_statement(dialect: str) -> Insert:
    insert = sqlite_dml.insert if dialect == "sqlite" else pg_dml.insert
    statement = insert(schema.snapshots).values(
        {name: bindparam(name) for name in _SNAPSHOT_COLUMNS}
    )
    return statement.on_conflict_do_update(
        index_elements=[schema.snapshots.c.stream_id],
        set_={name: statement.excluded[name] for name in _SNAPSHOT_COLUMNS[1:]},
        where=schema.snapshots.c.version < statement.excluded.version,
    )


def read_stream_on(conn: DriverConnection, stream_id: str, after_version: int) -> list[StoredEvent]:
    """A stream's records above `after_version`, in order, in `conn`'s transaction."""
    statement = compiled(conn.dialect, "read_stream", _read_stream_statement)
    rows = conn.fetchall(statement, {"stream_id": stream_id, "after_version": after_version})
    return [_record(row) for row in rows]


def load_stream_on(
    conn: DriverConnection, aggregate_type: str, aggregate_id: str, after_version: int
) -> list[StoredEvent]:
    """One aggregate's records above `after_version`, in order, in `conn`'s transaction.

    What `read_stream_on` returns for the aggregate's stream, read for loading
    it: the stream id, aggregate id and type are the aggregate's own, not read
    back for every row, and each row becomes a record in this one loop.
    """
    stream_id = stream_id_for(aggregate_type, aggregate_id)
    statement = compiled(conn.dialect, "load_stream", _load_stream_statement)
    rows = conn.fetchall(statement, {"stream_id": stream_id, "after_version": after_version})
    records: list[StoredEvent] = []
    append = records.append
    for position, version, event_type, schema_version, raw_id, raw_time, payload, meta in rows:
        event_id = raw_id  # as in `_record`
        if not isinstance(raw_id, UUID):
            event_id = uuid_from_hex(raw_id) if len(raw_id) == 32 else UUID(raw_id)
        occurred_at = raw_time
        if isinstance(raw_time, str):
            occurred_at = datetime.fromisoformat(raw_time + "+00:00")
        elif raw_time.tzinfo is None:
            occurred_at = raw_time.replace(tzinfo=UTC)
        elif raw_time.tzinfo is not UTC:
            occurred_at = raw_time.astimezone(UTC)
        record = (
            position,
            stream_id,
            aggregate_id,
            aggregate_type,
            version,
            event_type,
            schema_version,
            event_id,
            occurred_at,
            payload,
            meta,
        )
        append(_new_tuple(StoredEvent, record))
    return records


def load_snapshot_on(conn: DriverConnection, stream_id: str) -> tuple[int, str, str] | None:
    """`(version, fingerprint, state)` of a stream's snapshot, in `conn`'s transaction."""
    statement = compiled(conn.dialect, "load_snapshot", _load_snapshot_statement)
    rows = conn.fetchall(statement, {"stream_id": stream_id})
    if not rows:
        return None
    version, fingerprint, state = rows[0]
    return int(version), str(fingerprint), str(state)


def save_snapshot_on(
    conn: DriverConnection,
    *,
    stream_id: str,
    aggregate_type: str,
    version: int,
    fingerprint: str,
    state: str,
) -> None:
    """Replace a stream's snapshot (unless a newer one is stored), in `conn`'s transaction."""
    taken_at = datetime.now(UTC)
    values = {
        "stream_id": stream_id,
        "aggregate_type": aggregate_type,
        "version": version,
        "fingerprint": fingerprint,
        "state": state,
        "taken_at": sqlite_datetime(taken_at) if conn.is_sqlite else taken_at,
    }
    conn.execute(compiled(conn.dialect, "save_snapshot", _save_snapshot_statement), values)


# -- inserting a batch ---------------------------------------------------------------
#
# A batch is inserted so that its positions ascend in the order of the records
# (a stream's versions appear in the log in order) and the positions come back
# in that order. SQLAlchemy's `returning(sort_by_parameter_order=True)` does
# both, but slowly: on SQLite it runs one INSERT ... RETURNING per row, in
# Python; on PostgreSQL it sends one statement with ten bind parameters per
# row, which psycopg parses anew on every call.


def insert_on(conn: DriverConnection, records: Sequence[StoredEvent]) -> list[int]:
    """Insert `records` in order, in `conn`'s transaction; their global positions, in order."""
    if conn.is_sqlite:
        return _insert_sqlite(conn, records)
    if len(records) == 1:
        statement = compiled(conn.dialect, "insert_event", _insert_statement)
        return [int(conn.fetchall(statement, _postgresql_row(records[0]))[0][0])]
    return _insert_postgresql(conn, records)


def _insert_postgresql(conn: DriverConnection, records: Sequence[StoredEvent]) -> list[int]:
    # One short statement whatever the batch size: the columns travel as ten
    # arrays. PostgreSQL draws identity values in the order of INSERT ...
    # SELECT ... ORDER BY, which is what SQLAlchemy's sorted form relies on too.
    columns = {name: [getattr(record, name) for record in records] for name in _ARRAY_TYPES}
    return sorted(int(row[0]) for row in conn.run(_INSERT_UNNEST, columns, fetch=True))


def _insert_sqlite(conn: DriverConnection, records: Sequence[StoredEvent]) -> list[int]:
    # The first row's INSERT takes the write lock (if the transaction does not
    # hold it yet) and returns its position; `executemany` inserts the rest.
    # Under the lock each row gets the next rowid (one above the largest), so
    # when the last one is `first + n - 1` the batch holds exactly the
    # positions from `first`, in order.
    one = compiled(conn.dialect, "insert_event", _insert_statement)
    first = int(conn.run(one.sql, _sqlite_row(records[0]), fetch=True)[0][0])
    if len(records) == 1:
        return [first]
    many = compiled(conn.dialect, "insert_events", _insert_rows_statement)
    conn.run(many.sql, [_sqlite_row(record) for record in records[1:]], many=True)
    last = int(conn.run("SELECT last_insert_rowid()", (), fetch=True)[0][0])
    if last == first + len(records) - 1:
        return list(range(first, last + 1))
    # SQLite chose rowids some other way (only once the largest rowid is taken): ask.
    marks = ", ".join("?" * len(records))
    rows = conn.run(
        f"SELECT event_id, global_position FROM events WHERE event_id IN ({marks})",
        [record.event_id.hex for record in records],
        fetch=True,
    )
    found = {event_id: int(position) for event_id, position in rows}
    return [found[record.event_id.hex] for record in records]


def _sqlite_row(record: StoredEvent) -> tuple[Any, ...]:
    # In the column order of `_COLUMN_NAMES` (the compiled INSERT's order, a
    # test checks), as SQLAlchemy's SQLite types store them: the UUID as 32
    # hex digits, the time as naive UTC text with microseconds.
    return (
        record.stream_id,
        record.aggregate_id,
        record.aggregate_type,
        record.version,
        record.event_type,
        record.schema_version,
        record.event_id.hex,
        sqlite_datetime(record.occurred_at),
        record.payload,
        record.metadata,
    )


def _postgresql_row(record: StoredEvent) -> dict[str, Any]:
    return {
        "stream_id": record.stream_id,
        "aggregate_id": record.aggregate_id,
        "aggregate_type": record.aggregate_type,
        "version": record.version,
        "event_type": record.event_type,
        "schema_version": record.schema_version,
        "event_id": record.event_id,
        "occurred_at": record.occurred_at,
        "payload": record.payload,
        "metadata": record.metadata,
    }


def sqlite_datetime(value: datetime) -> str:
    """`value` as the store's SQLite text: UTC, naive, always with microseconds."""
    zone = value.tzinfo
    if zone is UTC:  # what `trigger` stamps: cut the "+00:00" off
        return value.isoformat(" ", "microseconds")[:-6]
    if zone is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")


_new_tuple = tuple.__new__


def _record(row: Sequence[Any]) -> StoredEvent:
    event_id, occurred_at = row[7], row[8]
    if not isinstance(event_id, UUID):  # SQLite: text; PostgreSQL: a UUID already
        event_id = uuid_from_hex(event_id) if len(event_id) == 32 else UUID(event_id)
    if isinstance(occurred_at, str):  # SQLite: text, always UTC (the store only writes UTC)
        occurred_at = datetime.fromisoformat(occurred_at + "+00:00")
    elif occurred_at.tzinfo is None:
        occurred_at = occurred_at.replace(tzinfo=UTC)
    elif occurred_at.tzinfo is not UTC:  # PostgreSQL answers in the session's zone
        occurred_at = occurred_at.astimezone(UTC)
    # The tuple itself: `StoredEvent(...)` would add a Python-level call per row.
    return _new_tuple(
        StoredEvent,
        (
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
        ),
    )
