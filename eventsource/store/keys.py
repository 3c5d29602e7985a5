"""Subjects' keys for personal data: a store's own table, and other contexts' tables.

`StoreKeys` is the key ring of a store's codec. It seals with keys of the
store's own `personal_data_keys` table, and opens values sealed in any
context, asking `OtherContexts` for keys of the contexts it does not own.
`LocalKeys` is the ring of a codec without a store (a projection's, the
testing toolkit's): it seals with keys that live in memory only.

A subject's first key is made in memory and written in the same
transaction as the first events sealed with it (`write_pending`), so a save
that rolls back leaves no key behind it. Two processes that make a first
key for one subject at once are serialised by the appenders' lock; the one
that comes second finds the other's key stored, adopts it, and its caller
seals its events again before inserting them.

Keys read are cached for `cache_seconds` (`EVENTSOURCE_KEYS_CACHE_SECONDS`,
default 60): a `forget` in another process takes effect here within that
time, at once in the process that forgets, and at once in a consumer that
reads the `PersonalDataForgotten` notice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, Insert, NullPool, Select, bindparam, select
from sqlalchemy.dialects.postgresql import dml as pg_dml
from sqlalchemy.dialects.sqlite import dml as sqlite_dml
from sqlalchemy.engine import URL

from eventsource.errors import ConfigurationError
from eventsource.events.personal import SubjectKey, new_key, new_key_id
from eventsource.events.records import StoredEvent
from eventsource.store import schema
from eventsource.store.driver import DriverConnection, compiled, driver_transaction
from eventsource.store.engine import COMMIT_ORDER_LOCK, create_engine

KeyDatabase = str | URL | Engine

LOCAL_CONTEXT = "~local"  # not a context name, so it names no context's table
DEFAULT_CACHE_SECONDS = 60.0
# How long a key that lost the race for a subject is still looked for in
# records about to be written (a save in flight does not take this long).
_LOST_SECONDS = 600.0

V = TypeVar("V")
_MISS: Any = object()


class _Cache(Generic[V]):
    """Values that expire `seconds` after they were put (0: never cached)."""

    def __init__(self, seconds: Callable[[], float]) -> None:
        self._seconds = seconds
        self._items: dict[str, tuple[float, V]] = {}

    def get(self, key: str) -> V:
        found = self._items.get(key)
        if found is None or found[0] <= time.monotonic():
            return _MISS  # type: ignore[no-any-return]
        return found[1]

    def put(self, key: str, value: V) -> None:
        seconds = self._seconds()
        if seconds > 0:
            self._items[key] = (time.monotonic() + seconds, value)

    def drop(self, key: str) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()


class _CacheSeconds:
    """`EVENTSOURCE_KEYS_CACHE_SECONDS`, read once when first needed, unless given."""

    def __init__(self, seconds: float | None) -> None:
        self._seconds = seconds

    def __call__(self) -> float:
        if self._seconds is None:
            from eventsource.settings import Settings

            self._seconds = Settings().keys_cache_seconds
        return self._seconds


# -- statements -------------------------------------------------------------------------

_keys = schema.personal_data_keys.c


def _select_by_subject(_dialect: str) -> Select[Any]:
    return select(_keys.key_id, _keys.key).where(_keys.subject == bindparam("subject"))


def _select_by_id(_dialect: str) -> Select[Any]:
    return select(_keys.key).where(_keys.key_id == bindparam("key_id"))


def _insert_key(dialect: str) -> Insert:
    insert = sqlite_dml.insert if dialect == "sqlite" else pg_dml.insert
    statement = insert(schema.personal_data_keys).values(
        {name: bindparam(name) for name in ("key_id", "subject", "key", "created_at")}
    )
    return statement.on_conflict_do_nothing(index_elements=["subject"])


def _read_key(engine: Engine, key_id: str) -> AESGCM | None:
    with driver_transaction(engine, write=False) as conn:
        rows = conn.fetchall(
            compiled(conn.dialect, "pd_key_by_id", _select_by_id), {"key_id": key_id}
        )
    return AESGCM(bytes(rows[0][0])) if rows else None


def take_commit_order_lock(conn: DriverConnection) -> None:
    """The appenders' lock (PostgreSQL; SQLite's `BEGIN IMMEDIATE` holds one already)."""
    if not conn.is_sqlite:
        signed = (
            COMMIT_ORDER_LOCK - (1 << 64) if COMMIT_ORDER_LOCK >= 1 << 63 else COMMIT_ORDER_LOCK
        )
        conn.run("SELECT pg_advisory_xact_lock(%(key)s)", {"key": signed}, fetch=True)


# -- other contexts ---------------------------------------------------------------------


class KeyTable:
    """Another context's `personal_data_keys`, read only (to open what it sealed)."""

    def __init__(self, bind: KeyDatabase, *, cache_seconds: Callable[[], float]) -> None:
        self._owns = not isinstance(bind, Engine)
        # No pool: keys are read rarely (they are cached), and a codec that
        # nobody closes (a projection's) must not leave connections open.
        self.engine = bind if isinstance(bind, Engine) else create_engine(bind, poolclass=NullPool)
        self._cache: _Cache[AESGCM | None] = _Cache(cache_seconds)

    def opening_key(self, key_id: str) -> AESGCM | None:
        found = self._cache.get(key_id)
        if found is _MISS:
            found = _read_key(self.engine, key_id)
            self._cache.put(key_id, found)
        return found

    def clear(self) -> None:
        self._cache.clear()

    def close(self) -> None:
        if self._owns:
            self.engine.dispose()


class OtherContexts:
    """Where the keys of contexts other than one's own are read.

    A context's key database is, in this order: the one given here;
    `EVENTSOURCE_KEYS`; `EVENTSOURCE_STORES` (embedded mode, where the
    other context's store is known anyway); the process's own database if
    the context is `EVENTSOURCE_CONTEXT`. Settings are read when a value
    sealed in an unknown context is first met.
    """

    def __init__(
        self,
        databases: Mapping[str, KeyDatabase] | None = None,
        *,
        cache_seconds: Callable[[], float],
    ) -> None:
        self._given = dict(databases or {})
        self._cache_seconds = cache_seconds
        self._tables: dict[str, KeyTable] = {}
        self._lock = threading.Lock()

    def know(self, context: str, database: KeyDatabase) -> None:
        """Read `context`'s keys in `database` from now on."""
        with self._lock:
            self._given[context] = database
            table = self._tables.pop(context, None)
        if table is not None:
            table.close()

    def opening_key(self, context: str, key_id: str) -> AESGCM | None:
        table = self._tables.get(context)
        if table is None:
            table = self._table(context)
        return table.opening_key(key_id)

    def _table(self, context: str) -> KeyTable:
        with self._lock:
            table = self._tables.get(context)
            if table is None:
                database = self._given.get(context) or _configured(context)
                table = KeyTable(database, cache_seconds=self._cache_seconds)
                self._tables[context] = table
            return table

    def clear(self) -> None:
        for table in list(self._tables.values()):
            table.clear()

    def close(self) -> None:
        for table in list(self._tables.values()):
            table.close()
        self._tables.clear()


def _configured(context: str) -> str:
    from eventsource.settings import Settings

    settings = Settings()
    for databases in (settings.keys, settings.stores):
        if context in databases:
            return databases[context]
    if context == settings.context and "database_url" in settings.model_fields_set:
        return settings.database_url
    raise ConfigurationError(
        f"personal data sealed in context {context!r} cannot be opened: no key database is"
        f' known for it; set EVENTSOURCE_KEYS=\'{{"{context}": "<its database URL>"}}\''
        " (a user that may read its personal_data_keys table)"
    )


# -- a store's own keys -----------------------------------------------------------------


class StoreKeys:
    """One store's keys (its `personal_data_keys`), and the way to everyone else's."""

    def __init__(
        self,
        engine: Engine,
        context: str,
        *,
        others: Mapping[str, KeyDatabase] | None = None,
        cache_seconds: float | None = None,
    ) -> None:
        self.engine = engine
        self.context = context
        seconds = _CacheSeconds(cache_seconds)
        self.others = OtherContexts(others, cache_seconds=seconds)
        self._sealing: _Cache[SubjectKey] = _Cache(seconds)
        self._opening: _Cache[AESGCM | None] = _Cache(seconds)
        # Keys made here and not yet seen stored: subject -> (key, its bytes).
        self._pending: dict[str, tuple[SubjectKey, bytes]] = {}
        # Ids of pending keys another writer beat: key id -> when it lost.
        self._lost: dict[str, float] = {}
        self._lock = threading.Lock()

    # -- the codec's side --------------------------------------------------------------

    def sealing_key(self, subject: str) -> SubjectKey:
        """The subject's key: cached, stored, or made now (written with the events)."""
        found = self._sealing.get(subject)
        if found is not _MISS:
            return found
        with driver_transaction(self.engine, write=False) as conn:
            rows = conn.fetchall(
                compiled(conn.dialect, "pd_key_by_subject", _select_by_subject),
                {"subject": subject},
            )
        with self._lock:
            pending = self._pending.get(subject)
            if rows:
                key = SubjectKey(self.context, rows[0][0], bytes(rows[0][1]))
                self._adopt(subject, key, pending)
                return key
            if pending is None:
                raw = new_key()
                pending = self._pending[subject] = (
                    SubjectKey(self.context, new_key_id(), raw),
                    raw,
                )
            return pending[0]

    def opening_key(self, context: str, key_id: str) -> AESGCM | None:
        """The cipher of key `key_id` of `context`, or None if it is deleted."""
        if context != self.context:
            return self.others.opening_key(context, key_id)
        found = self._opening.get(key_id)
        if found is not _MISS:
            return found
        for key, raw in list(self._pending.values()):
            if key.key_id == key_id:
                return AESGCM(raw)
        found = _read_key(self.engine, key_id)
        self._opening.put(key_id, found)
        return found

    def forgotten(self, subject: str) -> None:
        """Drop every cached key: a subject was forgotten (here or elsewhere)."""
        self._sealing.drop(subject)
        self._opening.clear()
        self.others.clear()

    # -- the writer's side ---------------------------------------------------------------

    @property
    def unsettled(self) -> bool:
        """Whether a save must call `write_pending` (keys made or lost here)."""
        return bool(self._pending or self._lost)

    def write_pending(
        self, conn: DriverConnection, records: Sequence[StoredEvent]
    ) -> tuple[bool, dict[str, SubjectKey]]:
        """Write the keys made here, in `conn`'s transaction, before `records`.

        Returns whether some of `records` are sealed with a key that another
        writer beat to its subject (the caller then encodes its events again,
        with the winner's key, and inserts those instead), and the keys this
        transaction stores (for `committed`).
        """
        with self._lock:
            pending = dict(self._pending)
        written: dict[str, SubjectKey] = {}
        if pending:
            take_commit_order_lock(conn)  # key writers queue like appenders: no deadlock
            stored = self._insert(conn, pending)
            with self._lock:
                for subject, (key, _) in pending.items():
                    if stored[subject] == key.key_id:
                        written[subject] = key
                        continue
                    self._lost[key.key_id] = time.monotonic()
                    if self._pending.get(subject, (None,))[0] is key:
                        del self._pending[subject]
                    self._sealing.drop(subject)
        return self._sealed_with_lost(records), written

    def _insert(
        self, conn: DriverConnection, pending: Mapping[str, tuple[SubjectKey, bytes]]
    ) -> dict[str, str]:
        """Insert the pending keys (unless the subject has one); subject -> stored key id."""
        now = datetime.now(UTC)
        created: Any = now.isoformat(" ", "microseconds")[:-6] if conn.is_sqlite else now
        insert = compiled(conn.dialect, "pd_insert_key", _insert_key)
        lookup = compiled(conn.dialect, "pd_key_by_subject", _select_by_subject)
        stored: dict[str, str] = {}
        for subject, (key, raw) in pending.items():
            values = {"key_id": key.key_id, "subject": subject, "key": raw, "created_at": created}
            conn.execute(insert, values)
            rows = conn.fetchall(lookup, {"subject": subject})
            stored[subject] = rows[0][0]
        return stored

    def _sealed_with_lost(self, records: Sequence[StoredEvent]) -> bool:
        if not self._lost:
            return False
        now = time.monotonic()
        with self._lock:
            for key_id, when in list(self._lost.items()):
                if now - when > _LOST_SECONDS:
                    del self._lost[key_id]
            lost = list(self._lost)
        return any(f":{key_id}:" in record.payload for record in records for key_id in lost)

    def committed(self, written: Mapping[str, SubjectKey]) -> None:
        """The transaction that wrote these keys committed: they are stored now."""
        with self._lock:
            for subject, key in written.items():
                pending = self._pending.get(subject)
                if pending is not None and pending[0] is key:
                    self._adopt(subject, key, pending)

    def _adopt(
        self, subject: str, key: SubjectKey, pending: tuple[SubjectKey, bytes] | None
    ) -> None:
        """`key` is the subject's stored key (call with the lock held)."""
        if pending is not None:
            if pending[0].key_id != key.key_id:
                # Another writer's key won; saves sealed with ours are still to check.
                self._lost[pending[0].key_id] = time.monotonic()
            del self._pending[subject]
        self._sealing.put(subject, key)

    # -- forgetting ----------------------------------------------------------------------

    def delete(self, conn: DriverConnection, subject: str) -> list[str]:
        """Delete the subject's key in `conn`'s transaction; the ids deleted."""
        rows = conn.fetchall(
            compiled(conn.dialect, "pd_key_by_subject", _select_by_subject), {"subject": subject}
        )
        if rows:
            conn.execute(compiled(conn.dialect, "pd_delete_key", _delete_key), {"subject": subject})
        return [str(row[0]) for row in rows]

    def close(self) -> None:
        self.others.close()


def _delete_key(_dialect: str) -> Any:
    table = schema.personal_data_keys
    return table.delete().where(table.c.subject == bindparam("subject"))


class LocalKeys:
    """The key ring of a codec without a store: seals with keys in memory
    (for tests of aggregates), opens other contexts' through their tables."""

    def __init__(self, others: Mapping[str, KeyDatabase] | None = None) -> None:
        self.others = OtherContexts(others, cache_seconds=_CacheSeconds(None))
        self._keys: dict[str, SubjectKey] = {}
        self._raw: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def sealing_key(self, subject: str) -> SubjectKey:
        with self._lock:
            key = self._keys.get(subject)
            if key is None:
                raw = new_key()
                key = self._keys[subject] = SubjectKey(LOCAL_CONTEXT, new_key_id(), raw)
                self._raw[key.key_id] = raw
            return key

    def opening_key(self, context: str, key_id: str) -> AESGCM | None:
        if context == LOCAL_CONTEXT:
            raw = self._raw.get(key_id)
            return AESGCM(raw) if raw is not None else None
        return self.others.opening_key(context, key_id)

    def forgotten(self, subject: str) -> None:
        with self._lock:
            key = self._keys.pop(subject, None)
            if key is not None:
                self._raw.pop(key.key_id, None)
        self.others.clear()
