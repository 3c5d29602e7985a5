"""Engines and transactions that behave the same on SQLite and PostgreSQL.

Two things differ by database and matter for correctness:

* Global positions must follow commit order. On PostgreSQL a writer takes a
  transaction-scoped advisory lock before any position is allocated (the
  events table also takes it in a BEFORE INSERT statement trigger, so no
  writer can forget). On SQLite a writer starts with `BEGIN IMMEDIATE`, which
  takes the database's write lock up front.
* pysqlite's own transaction handling is turned off so that the `BEGIN` we
  emit is the one that runs.
"""

from __future__ import annotations

import sqlite3
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

from sqlalchemy import Connection, Engine, Table, event, make_url, pool, text
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.dialects.postgresql import dml as pg_dml
from sqlalchemy.dialects.sqlite import dml as sqlite_dml
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from eventsource.errors import ConfigurationError
from eventsource.store import translate

SqliteSync = Literal["OFF", "NORMAL", "FULL", "EXTRA"]

# Any 64-bit constant works; every writer of every eventsource store uses it,
# and stores never share a database with each other's events table.
COMMIT_ORDER_LOCK = 0x6576656E74730001
_WRITE = "eventsource_write"
_prepared: weakref.WeakSet[Engine] = weakref.WeakSet()


def create_engine(
    url: str | URL | Engine,
    *,
    sqlite_synchronous: SqliteSync = "FULL",
    echo: bool = False,
    **engine_options: Any,
) -> Engine:
    """An engine for `url` set up for eventsource's transactions.

    `postgresql://` URLs use psycopg 3. SQLite files run in WAL mode with a
    30 s busy timeout; `sqlite_synchronous` trades durability on power loss
    for commit latency (a killed process never loses a commit either way).
    """
    if isinstance(url, Engine):
        engine = url
    else:
        parsed = make_url(url)
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        if parsed.get_backend_name() not in ("sqlite", "postgresql"):
            raise ConfigurationError(
                f"unsupported database {parsed.get_backend_name()!r} in"
                f" {parsed.render_as_string(hide_password=True)}: use sqlite or postgresql"
            )
        # Bound parameters are row data, possibly personal: never in an
        # error's message, so never in a log line.
        options: dict[str, Any] = {"echo": echo, "hide_parameters": True, **engine_options}
        if parsed.get_backend_name() == "sqlite":
            if parsed.database in (None, "", ":memory:"):
                # One shared connection, or every thread would see its own empty database.
                options.setdefault("poolclass", pool.StaticPool)
            options.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        else:
            # No ping per checkout (a round trip per save): a connection that
            # died is discarded on its first error, which callers retry.
            options.setdefault("pool_recycle", 1800)
            if "poolclass" not in options:
                options.setdefault("pool_size", 10)
                options.setdefault("max_overflow", 20)
        engine = sa_create_engine(parsed, **options)
    prepare(engine, sqlite_synchronous=sqlite_synchronous)
    return engine


def prepare(engine: Engine, *, sqlite_synchronous: SqliteSync = "FULL") -> None:
    """Install the transaction hooks and the error translation on an engine (once)."""
    if engine in _prepared:
        return
    translate.install(engine)
    if engine.dialect.name != "sqlite":
        _prepared.add(engine)
        return
    if sqlite_synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ConfigurationError("sqlite_synchronous must be OFF|NORMAL|FULL|EXTRA")

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={sqlite_synchronous}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(_WRITE, False)
        # Straight to the driver: SQLAlchemy's statement machinery would cost
        # a fifth of a small durable save here.
        connection.connection.dbapi_connection.execute(  # type: ignore[union-attr]
            "BEGIN IMMEDIATE" if write else "BEGIN"
        )

    # Connections opened before the hooks existed lack them.
    engine.dispose()
    _prepared.add(engine)


def upsert_into(bind: Engine | Connection, table: Table) -> pg_dml.Insert | sqlite_dml.Insert:
    """An INSERT into `table` that takes `ON CONFLICT` clauses, in the bind's dialect."""
    return sqlite_dml.insert(table) if bind.dialect.name == "sqlite" else pg_dml.insert(table)


@contextmanager
def write_connection(engine: Engine) -> Iterator[Connection]:
    """A connection whose transactions take SQLite's write lock when they begin."""
    with engine.connect() as connection:
        connection.execution_options(**{_WRITE: True})
        yield connection


@contextmanager
def write_transaction(engine: Engine, *, lock_first: bool = True) -> Iterator[Connection]:
    """A transaction whose writes to `events` get positions in commit order.

    `lock_first` takes the appenders' lock as the transaction begins, so that
    it is always taken before any row lock (transactions that also write
    views or positions cannot deadlock with each other). A transaction that
    only appends can leave it to the events table's trigger.
    """
    with write_connection(engine) as connection, connection.begin():
        if lock_first:
            take_commit_order_lock(connection)
        yield connection


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction for reads only."""
    with engine.connect() as connection, connection.begin():
        yield connection


def take_commit_order_lock(connection: Connection) -> None:
    """Serialise appenders until this transaction ends (PostgreSQL; SQLite already is)."""
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _signed(COMMIT_ORDER_LOCK)}
        )


def take_named_lock(connection: Connection, name: str) -> None:
    """Hold a lock called `name` until this transaction ends (PostgreSQL;
    SQLite's writers are serialised already)."""
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))"), {"name": name}
        )


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= (1 << 63) else value


def fetch_raw(
    conn: Connection, statement: Any, parameters: Mapping[str, Any] | None = None
) -> Sequence[Sequence[Any]]:
    """The driver's own tuples for `statement`: no `Row` objects, no result processing.

    For the hot paths that read the log (rebuilds, relays), which know what
    the two drivers return and convert it faster themselves.
    """
    result = conn.execute(statement, parameters)
    try:
        return result.cursor.fetchall() if result.cursor else []
    except conn.dialect.loaded_dbapi.Error as exc:
        error = DBAPIError.instance(None, None, exc, conn.dialect.loaded_dbapi.Error)
        raise (translate.translate(error) or error) from exc
    finally:
        result.close()
