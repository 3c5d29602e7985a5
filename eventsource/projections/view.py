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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from operator import itemgetter
from typing import Any
from uuid import UUID

from sqlalchemy import (
    Column,
    Connection,
    Executable,
    Result,
    Table,
    and_,
    select,
)

from eventsource.errors import ConfigurationError
from eventsource.projections.bulk import Key, Row, TableWriter
from eventsource.store.engine import take_named_lock

_ABSENT: None = None
# Key types taken as a one-column key without further checks.
_SCALARS = frozenset({str, int, UUID})
DEFAULT_CACHE_ROWS = 200_000


class ViewRow(dict[str, Any]):
    """A row of a view table as `View.get` returns it: a dict whose columns
    also read as attributes (`row.title`)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"the row has no column {name!r}") from None


@dataclass
class _TableState:
    logical: Table
    physical: Table
    key_columns: list[Column[Any]]
    writer: TableWriter
    # Values of a new row's columns that the handler did not give; columns the
    # database (or a Python callable) fills in are left out of it.
    defaults: Row
    names: frozenset[str] = frozenset()
    key_names: tuple[str, ...] = ()
    key_name: str | None = None  # the key column, when the key is one column
    key_of: Callable[[Row], Key] = tuple
    width: int = 0  # columns of the table
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
            key_names = tuple(_plain(c.name) for c in target.primary_key.columns)
            self._states[id(table)] = _TableState(
                logical=table,
                physical=target,
                key_columns=list(target.primary_key.columns),
                writer=TableWriter.for_table(target),
                defaults=_scalar_defaults(target),
                names=frozenset(target.c.keys()),
                key_names=key_names,
                key_name=key_names[0] if len(key_names) == 1 else None,
                key_of=_key_getter(key_names),
                width=len(target.c),
            )

    # -- batch lifecycle (driven by the worker) --------------------------------

    def begin(self, connection: Connection) -> None:
        """Start a batch on `connection` (the worker calls it; handlers never do)."""
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
            state.writer.write(conn, state.known, state.partial, state.deltas)

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

    def get(self, table: Table, key: Any) -> ViewRow | None:
        """The row with primary key `key` (scalar, tuple or dict), or None.

        The row is a copy, read as `row["title"]` or `row.title`::

            book = view.get(self.books, event.aggregate_id)
            if book is not None and book.status == "lent": ...

        A row inserted in this batch lacks the columns that the database or a
        callable default fills in, until the batch is written.
        """
        state = self._states.get(id(table)) or self._state(table)
        k = (key,) if type(key) in _SCALARS and len(state.key_names) == 1 else self._key(state, key)
        if k in state.known:
            row = state.known[k]
            return ViewRow(row) if row is not None else None
        current = self._load(state, k)
        if k in state.partial:
            merged = {**(current or state.defaults), **state.partial.pop(k)}
            state.known[k] = merged
            return ViewRow(merged)
        if k in state.deltas:
            merged = _added(state, k, current, state.deltas.pop(k))
            state.known[k] = merged
            return ViewRow(merged)
        return ViewRow(current) if current is not None else None

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
        row = {_plain(k): v for k, v in found.items()} if found is not None else None
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


def _scalar_defaults(table: Table) -> Row:
    defaults: Row = {}
    for column in table.columns:
        default = column.default
        arg = getattr(default, "arg", None) if default is not None else None
        if column.server_default is not None or callable(arg):
            continue  # filled in when the row is inserted
        defaults[_plain(column.name)] = arg if default is not None else None
    return defaults


def _plain(name: str) -> str:
    """A column's name as a plain `str`.

    SQLAlchemy's names are `quoted_name`s, a `str` subclass whose instances
    the garbage collector tracks, and so is any dict holding one: the view's
    rows are built from `defaults`, `key_names` and the rows read back, and
    with plain names they hold only numbers and text, which the collector
    never walks (and a thousand new rows a batch no longer bring on a
    collection of the oldest generation, which walks every object the
    process holds).
    """
    return str.__str__(name)
