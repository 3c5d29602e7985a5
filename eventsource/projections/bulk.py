"""Bulk writers for view tables: one statement per table and column set.

`View` folds a batch's changes in memory; a `TableWriter` writes them in
the batch's transaction with the fastest statement each dialect offers:
PostgreSQL's `INSERT ... SELECT FROM json_array_elements(...)` (or `unnest`
of arrays), SQLite's driver-level `executemany`, SQLAlchemy's `executemany`
otherwise. On PostgreSQL rows are written in key order, so that two workers
whose batches touch the same rows take their row locks in the same order
and cannot deadlock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Enum,
    Float,
    Insert,
    Integer,
    Numeric,
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
    text,
)

from eventsource.store.engine import upsert_into

Key = tuple[Any, ...]
Row = dict[str, Any]


@dataclass(frozen=True)
class _DriverUpsert:
    """An upsert handed straight to the driver, with the type conversions
    SQLAlchemy would have applied to each value."""

    sql: str
    names: tuple[str, ...]  # the columns in the order of the SQL's parameters
    processors: tuple[Callable[[Any], Any] | None, ...]


@dataclass
class TableWriter:
    """Writes one view table's batch, with its statements built once per column set."""

    physical: Table
    key_columns: list[Column[Any]]
    key_names: tuple[str, ...]
    # Keyed by (columns, additive): an additive upsert adds to the stored values.
    # None: that statement cannot carry those columns.
    json: dict[tuple[tuple[str, ...], bool], str | None] = field(default_factory=dict)
    unnest: dict[tuple[tuple[str, ...], bool], TextClause | None] = field(default_factory=dict)
    driver: dict[tuple[tuple[str, ...], bool], _DriverUpsert | None] = field(default_factory=dict)

    @classmethod
    def for_table(cls, physical: Table) -> TableWriter:
        key_columns = list(physical.primary_key.columns)
        return cls(physical, key_columns, tuple(c.name for c in key_columns))

    def write(
        self,
        conn: Connection,
        known: dict[Key, Row | None],
        partial: dict[Key, Row],
        deltas: dict[Key, Row],
    ) -> None:
        """Write a batch: `known` rows (None: deleted), blind upserts of `partial`
        rows, then additive upserts of `deltas` (column -> amount to add)."""
        # SQLite writers hold the whole database: only PostgreSQL's row locks
        # make the order matter.
        ordered = conn.dialect.name == "postgresql"
        deletes = [k for k, row in known.items() if row is None]
        if ordered:
            deletes = _in_key_order(deletes)
        groups: dict[tuple[str, ...], list[tuple[Key, Row]]] = {}
        # Rows grouped by their columns as given (the same handler gives them in
        # the same order; another order only costs another statement).
        for k, row in known.items():
            if row is not None:
                groups.setdefault(tuple(row), []).append((k, row))
        for k, row in partial.items():
            groups.setdefault(tuple(row), []).append((k, row))
        if deletes:
            _delete(conn, self, deletes)
        for columns, keyed in groups.items():
            _upsert(conn, self, columns, _rows(keyed, ordered))
        # Increments last: they add to the rows as the upserts above left them.
        added: dict[tuple[str, ...], list[tuple[Key, Row]]] = {}
        key_names = self.key_names
        for k, amounts in deltas.items():
            row = dict(zip(key_names, k, strict=True))
            row.update(amounts)
            added.setdefault(tuple(row), []).append((k, row))
        for columns, keyed in added.items():
            _upsert(conn, self, columns, _rows(keyed, ordered), add=True)


def _in_key_order(keys: list[Key]) -> list[Key]:
    try:
        return sorted(keys)
    except TypeError:  # keys of mixed types in one column: any fixed order will do
        return sorted(keys, key=repr)


def _rows(keyed: list[tuple[Key, Row]], ordered: bool) -> list[Row]:
    if ordered and len(keyed) > 1:
        try:
            keyed.sort(key=itemgetter(0))
        except TypeError:
            keyed.sort(key=lambda pair: repr(pair[0]))
    return [row for _, row in keyed]


def _delete(conn: Connection, writer: TableWriter, keys: Iterable[Key]) -> None:
    names = [f"_k{i}" for i in range(len(writer.key_columns))]
    statement = delete(writer.physical).where(
        and_(*(c == bindparam(n) for c, n in zip(writer.key_columns, names, strict=True)))
    )
    conn.execute(statement, [dict(zip(names, k, strict=True)) for k in keys])


def _upsert(
    conn: Connection,
    writer: TableWriter,
    columns: tuple[str, ...],
    rows: list[Row],
    *,
    add: bool = False,
) -> None:
    if conn.dialect.name == "postgresql" and len(rows) > 1:
        from_json = _json_statement(conn, writer, columns, add)
        if from_json is not None:
            payload = _json_rows(writer.physical, columns, rows)
            if payload is not None:
                conn.exec_driver_sql(from_json, (payload,))
                return
        bulk = _unnest_statement(conn, writer, columns, add)
        arrays = {f"c{i}": [row[name] for row in rows] for i, name in enumerate(columns)}
        if bulk is not None and all(_one_type(values) for values in arrays.values()):
            conn.execute(bulk, arrays)
            return
    elif conn.dialect.name == "sqlite":
        driver = _driver_upsert(conn, writer, columns, add)
        if driver is not None:
            conn.exec_driver_sql(driver.sql, _driver_rows(driver, rows))
            return
    conn.execute(_upsert_statement(conn, writer, columns, add=add), rows)


def _upsert_statement(
    conn: Connection,
    writer: TableWriter,
    columns: tuple[str, ...],
    *,
    bind: bool = False,
    add: bool = False,
) -> Insert:
    """`INSERT ... ON CONFLICT` of `columns`, updating those outside the key
    (with `add`, adding to them); `bind` names a parameter per column (for
    compiling it once)."""
    statement = upsert_into(conn, writer.physical)
    if bind:
        statement = statement.values({name: bindparam(name) for name in columns})
    table = writer.physical
    updates = {
        # A literal 0, not a parameter: the driver statement binds only columns.
        name: func.coalesce(table.c[name], literal_column("0")) + statement.excluded[name]
        if add
        else statement.excluded[name]
        for name in columns
        if name not in writer.key_names
    }
    if updates:
        return statement.on_conflict_do_update(index_elements=writer.key_columns, set_=updates)
    return statement.on_conflict_do_nothing(index_elements=writer.key_columns)


def _driver_upsert(
    conn: Connection, writer: TableWriter, columns: tuple[str, ...], add: bool
) -> _DriverUpsert | None:
    """The upsert for a column set as driver SQL (SQLite's `executemany`).

    SQLAlchemy's own `executemany` builds every row's parameters in Python,
    which costs more than SQLite's insert itself.
    """
    if (columns, add) in writer.driver:
        return writer.driver[columns, add]
    table = writer.physical
    driver: _DriverUpsert | None = None
    if not _fills_in(table, columns):
        compiled = _upsert_statement(conn, writer, columns, bind=True, add=add).compile(
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
    writer.driver[columns, add] = driver
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
    conn: Connection, writer: TableWriter, columns: tuple[str, ...], add: bool
) -> TextClause | None:
    """One `INSERT ... SELECT FROM unnest(arrays) ON CONFLICT` for a column set.

    Several times faster than `executemany`, which sends one statement per row.
    """
    if (columns, add) in writer.unnest:
        return writer.unnest[columns, add]
    table = writer.physical
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
            f" SELECT * FROM unnest({arrays}) {_conflict_action(conn, writer, columns, add)}"
        )
    writer.unnest[columns, add] = statement
    return statement


def _conflict_action(
    conn: Connection, writer: TableWriter, columns: tuple[str, ...], add: bool
) -> str:
    """`ON CONFLICT (key) DO ...` of a bulk upsert into `_target`."""
    quote = conn.dialect.identifier_preparer.quote
    keys = ", ".join(quote(name) for name in writer.key_names)
    updates = [quote(name) for name in columns if name not in writer.key_names]
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
    conn: Connection, writer: TableWriter, columns: tuple[str, ...], add: bool
) -> str | None:
    """One `INSERT ... SELECT FROM json_array_elements(<the rows>) ON CONFLICT`
    for a column set, as driver SQL with one parameter.

    The rows travel as one JSON text that orjson writes in C; arrays per
    column cost psycopg a Python-level step per value.
    """
    if (columns, add) in writer.json:
        return writer.json[columns, add]
    table = writer.physical
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
        tail = f"::json) AS r {_conflict_action(conn, writer, columns, add)}"
        # Driver SQL: a % in a name must not read as a placeholder.
        statement = head.replace("%", "%%") + "%s" + tail.replace("%", "%%")
    writer.json[columns, add] = statement
    return statement


def _json_rows(table: Table, columns: tuple[str, ...], rows: list[Row]) -> str | None:
    """`rows` as a JSON array of arrays, or None when JSON cannot carry them
    exactly (mixed Python types in a column, NaN or infinite floats, integers
    beyond 64 bits): those take the arrays instead."""
    if len(columns) == 1:
        tuples: list[tuple[Any, ...]] = [(row[columns[0]],) for row in rows]
    else:
        tuples = list(map(itemgetter(*columns), rows))
    for name in columns:
        # A column's values read from the rows, not by `zip(*tuples)`: that
        # holds an iterator per row, thousands of objects the garbage
        # collector tracks, which it promoted to its oldest generation.
        kinds = _kinds(map(itemgetter(name), rows))
        if len(kinds) > 1:
            return None
        if float in kinds and not (
            isinstance(table.c[name].type, Numeric | Float)
            and all(math.isfinite(v) for v in map(itemgetter(name), rows) if v is not None)
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
