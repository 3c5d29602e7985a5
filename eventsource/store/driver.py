"""The store's hot statements, compiled once per dialect and run on the driver's connection.

A save of one event or a `get` runs two or three short statements. Through
SQLAlchemy's `Connection` each one is coerced, looked up in the compiled
cache, has its parameters processed and its result wrapped, and the
transaction around them fires engine events and resets the pooled
connection: several times the cost of the statements themselves. Here the
statements are compiled from the same Core tables once per dialect (so their
SQL cannot drift from `schema.py`), their parameters are built as the driver
takes them, and a transaction is the pooled DBAPI connection itself.

Engine-level `*_execute` event listeners do not see these statements; the
pool's own events (connect, checkout, checkin) still run, so SQLite
connections get their pragmas. A driver error is raised as the engine's own
statements raise it (`store/translate.py`): `StoreUnavailable` or
`StoreError` where translated, else SQLAlchemy's `DBAPIError` subclass
(`IntegrityError`, ...); a connection that died is invalidated rather than
returned to the pool.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement

from eventsource.errors import StoreError, StoreUnavailable
from eventsource.store import translate


class Compiled:
    """One statement's SQL for one dialect and how to pass its parameters."""

    __slots__ = ("names", "sql")

    def __init__(self, sql: str, names: tuple[str, ...] | None) -> None:
        self.sql = sql
        # Positional paramstyles (SQLite's `?`) take a tuple in this order;
        # named ones (psycopg's `%(name)s`) take the mapping itself.
        self.names = names

    def parameters(self, values: Mapping[str, Any]) -> Sequence[Any] | Mapping[str, Any]:
        if self.names is None:
            return values
        return tuple([values[name] for name in self.names])


_cache: dict[tuple[str, str, str], Compiled] = {}
_cache_lock = threading.Lock()


def compiled(dialect: Dialect, key: str, build: Callable[[str], ClauseElement]) -> Compiled:
    """The statement `build(dialect.name)` compiled for `dialect`, once per dialect and key.

    Keyed by the dialect's name and paramstyle, not the engine: every engine
    of one dialect renders the same SQL.
    """
    cache_key = (key, dialect.name, dialect.paramstyle)
    found = _cache.get(cache_key)
    if found is not None:
        return found
    with _cache_lock:
        found = _cache.get(cache_key)
        if found is None:
            found = _cache[cache_key] = _compile(build(dialect.name), dialect)
    return found


def _compile(statement: ClauseElement, dialect: Dialect) -> Compiled:
    result = statement.compile(dialect=dialect)
    names: tuple[str, ...] | None = None
    if dialect.positional:
        names = tuple(getattr(result, "positiontup", None) or ())
    return Compiled(str(result), names)


class DriverConnection:
    """A DBAPI connection in a transaction, with the dialect that names its SQL."""

    __slots__ = ("dbapi", "dialect", "engine", "is_sqlite")

    def __init__(self, dbapi: Any, dialect: Dialect, engine: Engine) -> None:
        self.dbapi = dbapi
        self.dialect = dialect
        self.engine = engine
        self.is_sqlite = dialect.name == "sqlite"

    @classmethod
    def of(cls, connection: Connection) -> DriverConnection:
        """The driver's connection under a SQLAlchemy `Connection` (and its transaction)."""
        return cls(connection.connection.dbapi_connection, connection.dialect, connection.engine)

    def fetchall(self, statement: Compiled, values: Mapping[str, Any]) -> list[Any]:
        """The driver's rows (tuples) of one statement."""
        return self.run(statement.sql, statement.parameters(values), fetch=True)

    def execute(self, statement: Compiled, values: Mapping[str, Any]) -> None:
        self.run(statement.sql, statement.parameters(values))

    def run(
        self, sql: str, parameters: Any, *, fetch: bool = False, many: bool = False
    ) -> list[Any]:
        """Run `sql` on a fresh cursor; driver errors come out as SQLAlchemy's."""
        cursor = self.dbapi.cursor()
        try:
            if many:
                cursor.executemany(sql, parameters)
            else:
                cursor.execute(sql, parameters)
            return cursor.fetchall() if fetch else []
        except self.dialect.loaded_dbapi.Error as exc:
            raise _error(self.engine, sql, exc, self.dbapi) from exc
        finally:
            cursor.close()


@contextmanager
def driver_transaction(engine: Engine, *, write: bool) -> Iterator[DriverConnection]:
    """A transaction on a pooled DBAPI connection; committed if the block succeeds.

    On SQLite a write transaction begins with `BEGIN IMMEDIATE` (positions in
    commit order), as `engine.write_transaction` does; on PostgreSQL the
    driver opens the transaction with the first statement and the events
    table's trigger takes the appenders' lock.
    """
    try:
        fairy = engine.raw_connection()
    except engine.dialect.loaded_dbapi.Error as exc:
        # The pool's connect is not wrapped by the engine: a server that is
        # down or refuses the login surfaces here as the driver's own error.
        raise _error(engine, None, exc, None) from exc
    dbapi: Any = fairy.dbapi_connection
    try:
        try:
            if engine.dialect.name == "sqlite":
                dbapi.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield DriverConnection(dbapi, engine.dialect, engine)
            dbapi.commit()
        except engine.dialect.loaded_dbapi.Error as exc:  # BEGIN or COMMIT
            _rollback(dbapi)
            error = _error(engine, None, exc, dbapi)
            _invalidate_if_lost(fairy, error)
            raise error from exc
        except (DBAPIError, StoreError) as exc:  # a statement
            _rollback(dbapi)
            _invalidate_if_lost(fairy, exc)
            raise
        except BaseException:
            _rollback(dbapi)
            raise
    finally:
        fairy.close()


def _error(engine: Engine, sql: str | None, exc: Exception, dbapi: Any) -> Exception:
    """The error the engine's own statements raise for `exc`: our kind if
    `translate` knows it (a lost connection is `StoreUnavailable`), else
    SQLAlchemy's wrapper (`IntegrityError`, ...)."""
    dialect = engine.dialect
    lost = dialect.is_disconnect(exc, dbapi, None)  # type: ignore[arg-type]  # a DBAPI Error
    wrapped = DBAPIError.instance(
        sql, None, exc, dialect.loaded_dbapi.Error, connection_invalidated=lost
    )
    where = engine.url.render_as_string(hide_password=True)
    ours = translate.located(where, exc, wrapped, is_disconnect=lost)
    return ours if ours is not None else wrapped


def _invalidate_if_lost(fairy: Any, error: BaseException) -> None:
    """A connection that died leaves the pool instead of failing its next user."""
    lost = isinstance(error, DBAPIError) and error.connection_invalidated
    if lost or isinstance(error, StoreUnavailable):
        fairy.invalidate(error)


def _rollback(dbapi: Any) -> None:
    # The original error matters more; the pool resets the connection anyway.
    with suppress(Exception):
        dbapi.rollback()
