"""`View`: what projection handlers write through.

Handlers upsert, increment, update, delete and get rows by primary key. Nothing touches
the database row by row: within a batch the changes are folded in memory
(ten events on one row become one write), and `flush` writes them with one
bulk statement per table and column set, in the batch's transaction.

Between batches the view keeps a bounded cache of rows it has read or
written. The worker is the only writer of its tables, so the cache stays
true until the worker loses ownership (then it is cleared). A table that
starts empty (a rebuild) is "complete": a row missing from the cache is
absent, so folding a rebuild never reads the database at all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import islice
from operator import itemgetter
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Enum,
    Executable,
    Float,
    Insert,
    Integer,
    Numeric,
    Result,
    String,
    Table,
    TextClause,
    Time,
    TypeDecorator,
    Uuid,
    and_,
    bindparam,
    delete,
    func,
    literal_column,
    select,
    text,
)

from eventsource.errors import ConfigurationError
from eventsource.store.engine import take_named_lock, upsert_into

Key = tuple[Any, ...]
Row = dict[str, Any]
_ABSENT: None = None
# Key types taken as a one-column key without further checks.
_SCALARS = frozenset({str, int, UUID})
DEFAULT_CACHE_ROWS = 200_000


@dataclass(frozen=True)
class _DriverUpsert:
    """An upsert handed straight to the driver, with the type conversions
    SQLAlchemy would have applied to each value."""

    sql: str
    names: tuple[str, ...]  # the columns in the order of the SQL's parameters
    processors: tuple[Callable[[Any], Any] | None, ...]


@dataclass
class _TableState:
    logical: Table
    physical: Table
    key_columns: list[Column[Any]]
    # Values of a new row's columns that the handler did not give; columns the
    # database (or a Python callable) fills in are left out of it.
    defaults: Row
    names: frozenset[str] = frozenset()
    key_names: tuple[str, ...] = ()
    key_name: str | None = None  # the key column, when the key is one column
    key_of: Callable[[Row], Key] = tuple
    width: int = 0  # columns of the table
    # Bulk upserts by column set (None: not possible for those columns):
    # PostgreSQL's unnest statement, SQLite's SQL with its bind processors.
    # Keyed by (columns, additive): an additive upsert adds to the stored values.
    json: dict[tuple[tuple[str, ...], bool], str | None] = field(default_factory=dict)
    unnest: dict[tuple[tuple[str, ...], bool], TextClause | None] = field(default_factory=dict)
    driver: dict[tuple[tuple[str, ...], bool], _DriverUpsert | None] = field(default_factory=dict)
    cache: dict[Key, Row | None] = field(default_factory=dict)
    complete: bool = False
    # The batch in progress: rows fully known (None = deleted), blind
    # upserts of rows whose current state was never read, and blind
    # increments (column -> amount to add) of such rows.
    known: dict[Key, Row | None] = field(default_factory=dict)
    partial: dict[Key, Row] = field(default_factory=dict)
    deltas: dict[Key, Row] = field(default_factory=dict)

    def forget_batch(self) -> None:
        self.known.clear()
        self.partial.clear()
        self.deltas.clear()


class View:
    """Buffered, keyed access to a projection's view tables for one worker."""

    def __init__(
        self,
        tables: Sequence[Table],
        *,
        physical: Mapping[str, Table] | None = None,
        cache_rows: int = DEFAULT_CACHE_ROWS,
    ) -> None:
        self.cache_rows = cache_rows
        # Shared: other workers own some partitions and may write the same
        # rows, so nothing is cached across batches and reads lock the row.
        self.shared = False
        self._states: dict[int, _TableState] = {}
        self._conn: Connection | None = None
        # Set once `execute` ran: rows read since then may hold the batch's own
        # uncommitted writes, so a rollback must forget them.
        self._ran_sql = False
        for table in tables:
            target = physical.get(table.name, table) if physical else table
            key_names = tuple(c.name for c in target.primary_key.columns)
            self._states[id(table)] = _TableState(
                logical=table,
                physical=target,
                key_columns=list(target.primary_key.columns),
                defaults=_scalar_defaults(target),
                names=frozenset(target.c.keys()),
                key_names=key_names,
                key_name=key_names[0] if len(key_names) == 1 else None,
                key_of=_key_getter(key_names),
                width=len(target.c),
            )

    # -- batch lifecycle (driven by the worker) --------------------------------

    def begin(self, connection: Connection) -> None:
        self._conn = connection
        self._ran_sql = False
        if self.shared:
            self.clear_cache()
        for state in self._states.values():
            state.forget_batch()

    def flush(self) -> None:
        """Write the batch's changes in bulk (inside the batch's transaction)."""
        conn = self._require_connection()
        for state in self._states.values():
            _flush_table(conn, state)

    def commit(self) -> None:
        """The batch committed: what it wrote is now what the database holds."""
        for state in self._states.values():
            cache = state.cache
            if len(cache) + len(state.known) > self.cache_rows:
                for key in state.known:
                    cache.pop(key, None)  # moved to the end: the most recently used
            # else nothing will be evicted yet: recency can wait (a pop and a
            # re-insert per row cost more than the whole update).
            cache.update(state.known)
            self._evict(state)
            for key in (*state.partial, *state.deltas):
                # A blind write's full row is unknown: forget any stale copy.
                state.cache.pop(key, None)
                state.complete = False
            state.forget_batch()
        self._conn = None

    def rollback(self) -> None:
        """The batch failed: forget its changes (the cache still holds committed rows)."""
        for state in self._states.values():
            state.forget_batch()
        if self._ran_sql:
            self.clear_cache()
        self._conn = None

    def clear_cache(self) -> None:
        """Forget every cached row (another writer may have changed the tables)."""
        for state in self._states.values():
            state.cache.clear()
            state.complete = False

    def mark_empty(self) -> None:
        """The tables were just created empty: every row not cached is absent."""
        for state in self._states.values():
            state.cache.clear()
            state.complete = True

    # -- what handlers call ----------------------------------------------------

    def get(self, table: Table, key: Any) -> Row | None:
        """The row with primary key `key` (scalar, tuple or dict), or None.

        A row inserted in this batch lacks the columns that the database or a
        callable default fills in, until the batch is written.
        """
        state = self._states.get(id(table)) or self._state(table)
        k = (key,) if type(key) in _SCALARS and len(state.key_names) == 1 else self._key(state, key)
        if k in state.known:
            row = state.known[k]
            return dict(row) if row is not None else None
        current = self._load(state, k)
        if k in state.partial:
            merged = {**(current or state.defaults), **state.partial.pop(k)}
            state.known[k] = merged
            return dict(merged)
        if k in state.deltas:
            merged = _added(state, k, current, state.deltas.pop(k))
            state.known[k] = merged
            return dict(merged)
        return dict(current) if current is not None else None

    def upsert(self, table: Table, values: Mapping[str, Any] | None = None, /, **kw: Any) -> None:
        """Insert the row, or update the given columns if it exists."""
        state = self._states.get(id(table)) or self._state(table)
        row = kw if values is None else {**values, **kw}
        if not state.names.issuperset(row):
            self._check_columns(state, row)
        try:
            # One key column: no comprehension (a frame of its own per call).
            k = (row[state.key_name],) if state.key_name else state.key_of(row)
        except KeyError:
            missing = [name for name in state.key_names if name not in row]
            raise ConfigurationError(
                f"upsert into {state.logical.name!r} needs the key column(s) {missing}"
            ) from None
        if k in state.known:
            current = state.known[k]
            state.known[k] = {**(current if current is not None else state.defaults), **row}
        elif k in state.partial:
            state.partial[k].update(row)
        elif k in state.cache or state.complete:
            cached = state.cache.get(k)
            state.known[k] = {**(cached if cached is not None else state.defaults), **row}
        elif k in state.deltas:
            current = _added(state, k, self._load(state, k), state.deltas.pop(k))
            state.known[k] = {**current, **row}
        else:
            state.partial[k] = row

    def increment(self, table: Table, key: Any, /, **amounts: Any) -> None:
        """Add `amounts` to columns of the row with primary key `key` (a NULL
        counts as 0), inserting the row with those amounts if it is absent.

        Needs no read: counters, sums and balances of rows the view has never
        seen are written as one additive bulk upsert per batch.
        """
        state = self._states.get(id(table)) or self._state(table)
        k = (key,) if type(key) in _SCALARS and len(state.key_names) == 1 else self._key(state, key)
        if not state.names.issuperset(amounts) or not amounts.keys().isdisjoint(state.key_names):
            self._check_columns(state, amounts)
            raise ConfigurationError(
                f"increment of {state.logical.name!r} cannot change its key column(s)"
                f" {[name for name in amounts if name in state.key_names]}"
            )
        if not amounts:
            return
        if k in state.partial:
            self.get(table, k)  # a blind upsert and an increment: read the row once
        if k in state.known:
            current = state.known[k]
            if current is not None and not current.keys() >= amounts.keys():
                # Inserted in this batch without the column: the database
                # fills it in. Write the batch so far; the row is unknown now.
                self._write_out()
                state.deltas[k] = dict(amounts)
                return
        elif k in state.cache or state.complete:
            current = self._load(state, k)
        else:
            pending = state.deltas.get(k)
            if pending is None:
                state.deltas[k] = amounts
            else:
                for name, amount in amounts.items():
                    pending[name] = pending.get(name, 0) + amount
            return
        state.known[k] = _added(state, k, current, amounts)

    def update(
        self, table: Table, key: Any, values: Mapping[str, Any] | None = None, /, **kw: Any
    ) -> bool:
        """Change columns of an existing row; False (and nothing written) if absent."""
        state = self._state(table)
        k = self._key(state, key)
        changes = {**(values or {}), **kw}
        self._check_columns(state, changes)
        if k in state.deltas:
            self.get(table, k)
        if k in state.partial:
            state.partial[k].update(changes)
            return True
        current = state.known[k] if k in state.known else self._load(state, k)
        if current is None:
            return False
        state.known[k] = {**current, **changes}
        return True

    def delete(self, table: Table, key: Any) -> None:
        """Delete the row (a no-op if it does not exist)."""
        state = self._state(table)
        k = self._key(state, key)
        state.partial.pop(k, None)
        state.deltas.pop(k, None)
        state.known[k] = _ABSENT

    def execute(self, statement: Executable) -> Result[Any]:
        """Run any SQL in the batch's transaction, after writing the batch so far.

        The slow path, for queries that are not by key: the cache is dropped,
        since the statement may change rows behind it. Statements name the
        tables as declared; during a rebuild use `physical(table)` instead.
        """
        conn = self._write_out()
        return conn.execute(statement)

    def physical(self, table: Table) -> Table:
        """The table actually written: the declared one, or its rebuild copy."""
        return self._state(table).physical

    # -- internals -------------------------------------------------------------

    def _state(self, table: Table) -> _TableState:
        try:
            return self._states[id(table)]
        except KeyError:
            raise ConfigurationError(
                f"table {table.name!r} is not one of this projection's view tables"
            ) from None

    def _require_connection(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("the view is only usable inside a batch")
        return self._conn

    def _key(self, state: _TableState, key: Any) -> Key:
        columns = state.key_columns
        if isinstance(key, Mapping):
            try:
                return tuple(key[c.name] for c in columns)
            except KeyError as exc:
                raise ConfigurationError(
                    f"key of {state.logical.name!r} lacks column {exc.args[0]!r}"
                ) from None
        if isinstance(key, tuple):
            if len(key) != len(columns):
                raise ConfigurationError(
                    f"{state.logical.name!r} has a {len(columns)}-column key, got {key!r}"
                )
            return key
        if len(columns) != 1:
            raise ConfigurationError(
                f"{state.logical.name!r} has a {len(columns)}-column key; pass a tuple or dict"
            )
        return (key,)

    def _check_columns(self, state: _TableState, row: Mapping[str, Any]) -> None:
        if state.names.issuperset(row):
            return
        unknown = [name for name in row if name not in state.names]
        if unknown:
            raise ConfigurationError(f"{state.logical.name!r} has no column(s) {unknown}")

    def _load(self, state: _TableState, k: Key) -> Row | None:
        if k in state.cache:
            cached = state.cache[k]
            # A row this view inserted lacks the columns the database filled in.
            if cached is None or len(cached) == state.width:
                return cached
        elif state.complete:
            return None
        conn = self._require_connection()
        condition = and_(*(c == v for c, v in zip(state.key_columns, k, strict=True)))
        query = select(state.physical).where(condition)
        if self.shared and conn.dialect.name == "postgresql":
            # Another worker may be about to insert this very row: FOR UPDATE
            # cannot lock a row that does not exist yet, so take a lock on the
            # key itself first (held to the end of the batch's transaction).
            take_named_lock(conn, f"eventsource.view:{state.physical.name}:{k!r}")
            query = query.with_for_update()
        found = conn.execute(query).mappings().first()
        row = dict(found) if found is not None else None
        self._remember(state, k, row)
        return row

    def _remember(self, state: _TableState, k: Key, row: Row | None) -> None:
        state.cache.pop(k, None)
        state.cache[k] = row
        self._evict(state)

    def _evict(self, state: _TableState) -> None:
        excess = len(state.cache) - self.cache_rows
        if excess > 0:
            # Evict the oldest, a tenth more than needed so that this is rare;
            # from now on a miss must ask the database.
            cache = state.cache
            for old in list(islice(cache, excess + self.cache_rows // 10)):
                del cache[old]
            state.complete = False

    def _write_out(self) -> Connection:
        """Write the batch so far and forget every row (the slow path)."""
        conn = self._require_connection()
        self.flush()
        for state in self._states.values():
            state.forget_batch()
        self.clear_cache()
        self._ran_sql = True
        return conn


def _key_getter(names: tuple[str, ...]) -> Callable[[Row], Key]:
    """The key tuple of a row (several columns: `itemgetter` gives a tuple in C)."""
    if len(names) <= 1:
        return lambda row: tuple(row[name] for name in names)
    getter: Callable[[Row], Key] = itemgetter(*names)
    return getter


def _added(state: _TableState, k: Key, current: Row | None, amounts: Row) -> Row:
    """The row `current` (None: absent) after an increment, as SQL computes it."""
    if current is None:
        return {**state.defaults, **dict(zip(state.key_names, k, strict=True)), **amounts}
    row = dict(current)
    for name, amount in amounts.items():
        value = row.get(name)
        row[name] = amount if value is None else value + amount
    return row


def _flush_table(conn: Connection, state: _TableState) -> None:
    deletes = [k for k, row in state.known.items() if row is None]
    groups: dict[tuple[str, ...], list[Row]] = {}
    # Rows grouped by their columns as given (the same handler gives them in
    # the same order; another order only costs another statement).
    for row in state.known.values():
        if row is not None:
            groups.setdefault(tuple(row), []).append(row)
    for row in state.partial.values():
        groups.setdefault(tuple(row), []).append(row)
    if deletes:
        _delete(conn, state, deletes)
    for columns, rows in groups.items():
        _upsert(conn, state, columns, rows)
    # Increments last: they add to the rows as the upserts above left them.
    added: dict[tuple[str, ...], list[Row]] = {}
    key_names = state.key_names
    for k, amounts in state.deltas.items():
        row = dict(zip(key_names, k, strict=True))
        row.update(amounts)
        added.setdefault(tuple(row), []).append(row)
    for columns, rows in added.items():
        _upsert(conn, state, columns, rows, add=True)


def _delete(conn: Connection, state: _TableState, keys: Iterable[Key]) -> None:
    names = [f"_k{i}" for i in range(len(state.key_columns))]
    statement = delete(state.physical).where(
        and_(*(c == bindparam(n) for c, n in zip(state.key_columns, names, strict=True)))
    )
    conn.execute(statement, [dict(zip(names, k, strict=True)) for k in keys])


def _upsert(
    conn: Connection,
    state: _TableState,
    columns: tuple[str, ...],
    rows: list[Row],
    *,
    add: bool = False,
) -> None:
    if conn.dialect.name == "postgresql" and len(rows) > 1:
        from_json = _json_statement(conn, state, columns, add)
        if from_json is not None:
            payload = _json_rows(state.physical, columns, rows)
            if payload is not None:
                conn.exec_driver_sql(from_json, (payload,))
                return
        bulk = _unnest_statement(conn, state, columns, add)
        arrays = {f"c{i}": [row[name] for row in rows] for i, name in enumerate(columns)}
        if bulk is not None and all(_one_type(values) for values in arrays.values()):
            conn.execute(bulk, arrays)
            return
    elif conn.dialect.name == "sqlite":
        driver = _driver_upsert(conn, state, columns, add)
        if driver is not None:
            conn.exec_driver_sql(driver.sql, _driver_rows(driver, rows))
            return
    conn.execute(_upsert_statement(conn, state, columns, add=add), rows)


def _upsert_statement(
    conn: Connection,
    state: _TableState,
    columns: tuple[str, ...],
    *,
    bind: bool = False,
    add: bool = False,
) -> Insert:
    """`INSERT ... ON CONFLICT` of `columns`, updating those outside the key
    (with `add`, adding to them); `bind` names a parameter per column (for
    compiling it once)."""
    statement = upsert_into(conn, state.physical)
    if bind:
        statement = statement.values({name: bindparam(name) for name in columns})
    table = state.physical
    updates = {
        # A literal 0, not a parameter: the driver statement binds only columns.
        name: func.coalesce(table.c[name], literal_column("0")) + statement.excluded[name]
        if add
        else statement.excluded[name]
        for name in columns
        if name not in state.key_names
    }
    if updates:
        return statement.on_conflict_do_update(index_elements=state.key_columns, set_=updates)
    return statement.on_conflict_do_nothing(index_elements=state.key_columns)


def _driver_upsert(
    conn: Connection, state: _TableState, columns: tuple[str, ...], add: bool
) -> _DriverUpsert | None:
    """The upsert for a column set as driver SQL (SQLite's `executemany`).

    SQLAlchemy's own `executemany` builds every row's parameters in Python,
    which costs more than SQLite's insert itself.
    """
    if (columns, add) in state.driver:
        return state.driver[columns, add]
    table = state.physical
    driver: _DriverUpsert | None = None
    if not _fills_in(table, columns):
        compiled = _upsert_statement(conn, state, columns, bind=True, add=add).compile(
            dialect=conn.dialect
        )
        order = list(compiled.positiontup or ())
        if sorted(order) == sorted(columns):
            driver = _DriverUpsert(
                sql=str(compiled),
                names=tuple(order),
                processors=tuple(
                    table.c[name].type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
                    for name in order
                ),
            )
    state.driver[columns, add] = driver
    return driver


def _driver_rows(driver: _DriverUpsert, rows: list[Row]) -> list[tuple[Any, ...]]:
    names = driver.names
    if not any(driver.processors):
        if len(names) == 1:
            return [(row[names[0]],) for row in rows]
        return list(map(itemgetter(*names), rows))  # a tuple per row, built in C
    pairs = list(zip(names, driver.processors, strict=True))
    return [
        tuple([row[name] if process is None else process(row[name]) for name, process in pairs])
        for row in rows
    ]


def _fills_in(table: Table, columns: tuple[str, ...]) -> bool:
    """Whether SQLAlchemy would fill in columns outside `columns` (Python-side defaults)."""
    return any(
        c.name not in columns and (c.default is not None or c.onupdate is not None)
        for c in table.columns
    )


# Column types whose values psycopg sends as arrays that PostgreSQL casts back
# exactly; tables with other types (JSON, arrays, enums, decorated types) and
# columns that SQLAlchemy fills in itself take the row-by-row `executemany`.
_ARRAY_TYPES = (String, Integer, Numeric, Float, Boolean, DateTime, Date, Time, Uuid)


def _unnest_statement(
    conn: Connection, state: _TableState, columns: tuple[str, ...], add: bool
) -> TextClause | None:
    """One `INSERT ... SELECT FROM unnest(arrays) ON CONFLICT` for a column set.

    Several times faster than `executemany`, which sends one statement per row.
    """
    if (columns, add) in state.unnest:
        return state.unnest[columns, add]
    table = state.physical
    simple = all(
        isinstance(c.type, _ARRAY_TYPES) and not isinstance(c.type, TypeDecorator | Enum)
        for c in (table.c[name] for name in columns)
    )
    filled = _fills_in(table, columns)
    statement: TextClause | None = None
    if simple and not filled:
        quote = conn.dialect.identifier_preparer.quote
        arrays = ", ".join(
            f"CAST(:c{i} AS {_array_element_type(table.c[name].type, conn)}[])"
            for i, name in enumerate(columns)
        )
        name = conn.dialect.identifier_preparer.format_table(table)
        statement = text(
            f"INSERT INTO {name} AS _target"
            f" ({', '.join(quote(name) for name in columns)})"
            f" SELECT * FROM unnest({arrays}) {_conflict_action(conn, state, columns, add)}"
        )
    state.unnest[columns, add] = statement
    return statement


def _conflict_action(
    conn: Connection, state: _TableState, columns: tuple[str, ...], add: bool
) -> str:
    """`ON CONFLICT (key) DO ...` of a bulk upsert into `_target`."""
    quote = conn.dialect.identifier_preparer.quote
    keys = ", ".join(quote(name) for name in state.key_names)
    updates = [quote(name) for name in columns if name not in state.key_names]
    if not updates:
        return f"ON CONFLICT ({keys}) DO NOTHING"
    return f"ON CONFLICT ({keys}) DO UPDATE SET " + ", ".join(
        f"{q} = coalesce(_target.{q}, 0) + excluded.{q}" if add else f"{q} = excluded.{q}"
        for q in updates
    )


# Column types whose values go to PostgreSQL as JSON text and come back
# exactly: JSON carries strings, integers, decimals (as strings), booleans,
# UUIDs and times with a zone. Others take the arrays of `_unnest_statement`.
_JSON_TYPES = (String, Integer, Numeric, Float, Boolean, Uuid)


def _json_statement(
    conn: Connection, state: _TableState, columns: tuple[str, ...], add: bool
) -> str | None:
    """One `INSERT ... SELECT FROM json_array_elements(<the rows>) ON CONFLICT`
    for a column set, as driver SQL with one parameter.

    The rows travel as one JSON text that orjson writes in C; arrays per
    column cost psycopg a Python-level step per value.
    """
    if (columns, add) in state.json:
        return state.json[columns, add]
    table = state.physical
    types = [table.c[name].type for name in columns]
    plain = all(
        (isinstance(t, _JSON_TYPES) or (isinstance(t, DateTime) and t.timezone))
        and not isinstance(t, TypeDecorator | Enum)
        for t in types
    )
    statement: str | None = None
    if plain and not _fills_in(table, columns):
        quote = conn.dialect.identifier_preparer.quote
        values = ", ".join(
            f"(r ->> {i})::{_array_element_type(t, conn)}" for i, t in enumerate(types)
        )
        target = conn.dialect.identifier_preparer.format_table(table)
        head = (
            f"INSERT INTO {target} AS _target ({', '.join(quote(name) for name in columns)})"
            f" SELECT {values} FROM json_array_elements("
        )
        tail = f"::json) AS r {_conflict_action(conn, state, columns, add)}"
        # Driver SQL: a % in a name must not read as a placeholder.
        statement = head.replace("%", "%%") + "%s" + tail.replace("%", "%%")
    state.json[columns, add] = statement
    return statement


def _json_rows(table: Table, columns: tuple[str, ...], rows: list[Row]) -> str | None:
    """`rows` as a JSON array of arrays, or None when JSON cannot carry them
    exactly (mixed Python types in a column, NaN or infinite floats, integers
    beyond 64 bits): those take the arrays instead."""
    if len(columns) == 1:
        tuples: list[tuple[Any, ...]] = [(row[columns[0]],) for row in rows]
    else:
        tuples = list(map(itemgetter(*columns), rows))
    for name, values in zip(columns, zip(*tuples, strict=True), strict=True):
        kinds = _kinds(values)
        if len(kinds) > 1:
            return None
        if float in kinds and not (
            isinstance(table.c[name].type, Numeric | Float)
            and all(math.isfinite(v) for v in values if v is not None)
        ):
            return None
    try:
        return orjson.dumps(tuples, default=_json_default).decode()
    except TypeError:  # orjson.JSONEncodeError: a value JSON cannot carry
        return None


def _json_default(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)  # exact: PostgreSQL parses it back into NUMERIC
    raise TypeError(f"{type(value).__name__} is not JSON")


def _array_element_type(column_type: Any, conn: Connection) -> str:
    """The SQL type to cast a column's array to before the insert.

    Strings go as plain VARCHAR: an explicit cast to VARCHAR(n) would cut a
    longer value to n characters in silence, where the insert's own
    conversion refuses it, as a single-row write does.
    """
    if isinstance(column_type, String):
        return str(String().compile(dialect=conn.dialect))
    return str(column_type.compile(dialect=conn.dialect))


def _one_type(values: list[Any]) -> bool:
    """Whether the non-null values share one Python type (psycopg dumps no mixed arrays)."""
    return len(_kinds(values)) <= 1


def _kinds(values: Iterable[Any]) -> set[type]:
    """The Python types of the non-null values."""
    kinds = set(map(type, values))
    kinds.discard(type(None))
    return kinds


def _scalar_defaults(table: Table) -> Row:
    defaults: Row = {}
    for column in table.columns:
        default = column.default
        arg = getattr(default, "arg", None) if default is not None else None
        if column.server_default is not None or callable(arg):
            continue  # filled in when the row is inserted
        defaults[column.name] = arg if default is not None else None
    return defaults
