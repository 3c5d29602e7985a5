"""`View`: keyed, buffered writes of projection handlers, on SQLite and PostgreSQL.

Each test drives the view the way the worker does: `begin` in a transaction,
handler calls, `flush`, then `commit` once the transaction committed (or
`rollback` when it failed). What is checked is what handlers and readers of
the tables see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    Uuid,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError

from eventsource import ConfigurationError, View
from eventsource.store.engine import create_engine, write_connection

metadata = MetaData()
items = Table(
    "vt_items",
    metadata,
    Column("sku", String(50), primary_key=True),
    Column("name", String(100)),
    Column("quantity", Integer, nullable=False, default=0),
    Column("price", Integer),
)
stock = Table(
    "vt_stock",
    metadata,
    Column("warehouse", String(20), primary_key=True),
    Column("sku", String(50), primary_key=True),
    Column("quantity", Integer, nullable=False, default=0),
)
stamped = Table(
    "vt_stamped",
    metadata,
    Column("id", String(20), primary_key=True),
    Column("label", String(20)),
    Column("hits", Integer, nullable=False, server_default=text("7")),
    Column("tag", String(20), nullable=False, default=lambda: "made"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
typed = Table(
    "vt_typed",
    metadata,
    Column("id", String(20), primary_key=True),
    Column("amount", Numeric(12, 2)),
    Column("at", DateTime(timezone=True)),
    Column("ref", Uuid),
    Column("flag", Boolean),
    Column("big", BigInteger),
    Column("note", Text),
    Column("doc", JSON),
)
other = Table("vt_other", MetaData(), Column("id", Integer, primary_key=True))


class Boom(Exception):
    pass


@pytest.fixture
def engine(backend: str, database_url_factory: Callable[..., str]) -> Iterator[Engine]:
    made = create_engine(database_url_factory(backend))
    metadata.create_all(made)
    yield made
    made.dispose()


@pytest.fixture
def view() -> View:
    return View([items, stock, stamped, typed])


@contextmanager
def batch(view: View, engine: Engine) -> Iterator[View]:
    """One batch as the worker runs it: the view's changes commit with the transaction."""
    try:
        with write_connection(engine) as conn, conn.begin():
            view.begin(conn)
            yield view
            view.flush()
    except BaseException:
        view.rollback()
        raise
    view.commit()


def failed_batch(view: View, engine: Engine, changes: Callable[[], None]) -> None:
    """Make `changes` in a batch whose transaction then fails."""

    def run() -> None:
        with batch(view, engine):
            changes()
            raise Boom

    with pytest.raises(Boom):
        run()


def rows(engine: Engine, table: Table) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        found = conn.execute(select(table).order_by(*table.primary_key.columns)).mappings()
        return [dict(r) for r in found]


def test_upsert_inserts_then_merges_the_given_columns(view: View, engine: Engine) -> None:
    with batch(view, engine):
        view.upsert(items, sku="a", name="apple", price=3)
        view.upsert(items, {"sku": "a", "quantity": 5})
        view.upsert(items, sku="b", name="pear")
    assert rows(engine, items) == [
        {"sku": "a", "name": "apple", "quantity": 5, "price": 3},
        {"sku": "b", "name": "pear", "quantity": 0, "price": None},
    ]
    with batch(view, engine):
        view.upsert(items, sku="a", price=4)
    assert rows(engine, items)[0] == {"sku": "a", "name": "apple", "quantity": 5, "price": 4}


def test_a_fresh_view_merges_into_rows_it_never_read(view: View, engine: Engine) -> None:
    with batch(view, engine):
        view.upsert(items, sku="a", name="apple", quantity=2, price=3)
    fresh = View([items])
    with batch(fresh, engine):
        fresh.upsert(items, sku="a", quantity=9)
        assert fresh.get(items, "a") == {"sku": "a", "name": "apple", "quantity": 9, "price": 3}
    with batch(View([items]), engine) as blind:
        blind.upsert(items, sku="a", price=1)  # never read: written as a partial row
    assert rows(engine, items) == [{"sku": "a", "name": "apple", "quantity": 9, "price": 1}]


def test_get_sees_the_batch_and_new_rows_get_column_defaults(view: View, engine: Engine) -> None:
    with batch(view, engine):
        assert view.get(items, "a") is None
        view.upsert(items, sku="a", name="apple")
        assert view.get(items, "a") == {"sku": "a", "name": "apple", "quantity": 0, "price": None}
        view.upsert(items, sku="a", quantity=3)
        assert view.get(items, ("a",)) == {
            "sku": "a",
            "name": "apple",
            "quantity": 3,
            "price": None,
        }
    with batch(view, engine):
        assert view.get(items, {"sku": "a"}) == {
            "sku": "a",
            "name": "apple",
            "quantity": 3,
            "price": None,
        }


def test_get_returns_a_copy(view: View, engine: Engine) -> None:
    with batch(view, engine):
        view.upsert(items, sku="a", name="apple")
        row = view.get(items, "a")
        assert row is not None
        row["name"] = "changed by the caller"
        assert view.get(items, "a") == {"sku": "a", "name": "apple", "quantity": 0, "price": None}
    assert rows(engine, items)[0]["name"] == "apple"


def test_update_changes_existing_rows_only(view: View, engine: Engine) -> None:
    with batch(view, engine):
        view.upsert(items, sku="a", name="apple", quantity=1)
    with batch(view, engine):
        assert view.update(items, "a", quantity=2) is True
        assert view.update(items, "missing", quantity=2) is False
        assert view.get(items, "missing") is None
        assert view.update(items, "a", {"price": 9}) is True
    assert rows(engine, items) == [{"sku": "a", "name": "apple", "quantity": 2, "price": 9}]
    with batch(View([items]), engine) as fresh:
        assert fresh.update(items, "missing", quantity=2) is False
        assert fresh.update(items, "a", quantity=3) is True
    assert rows(engine, items) == [{"sku": "a", "name": "apple", "quantity": 3, "price": 9}]


def test_update_after_a_blind_upsert_in_the_same_batch(view: View, engine: Engine) -> None:
    with batch(View([items]), engine) as fresh:
        fresh.upsert(items, sku="n", name="new")
        assert fresh.update(items, "n", quantity=4) is True
    assert rows(engine, items) == [{"sku": "n", "name": "new", "quantity": 4, "price": None}]


def test_delete_removes_the_row_and_later_upserts_start_from_defaults(
    view: View, engine: Engine
) -> None:
    with batch(view, engine):
        view.upsert(items, sku="a", name="apple", quantity=5, price=3)
        view.upsert(items, sku="b", name="pear", quantity=1)
    with batch(view, engine):
        view.delete(items, "a")
        view.delete(items, "never-there")
        assert view.get(items, "a") is None
        assert view.update(items, "a", quantity=1) is False
    assert [r["sku"] for r in rows(engine, items)] == ["b"]
    with batch(view, engine):
        view.upsert(items, sku="b", price=2)
        view.delete(items, "b")
        view.upsert(items, sku="b", name="again")
        assert view.get(items, "b") == {"sku": "b", "name": "again", "quantity": 0, "price": None}
    assert rows(engine, items) == [{"sku": "b", "name": "again", "quantity": 0, "price": None}]


def test_delete_of_a_row_upserted_blind_in_the_same_batch(view: View, engine: Engine) -> None:
    with batch(view, engine):
        view.upsert(items, sku="a", name="apple")
    with batch(View([items]), engine) as fresh:
        fresh.upsert(items, sku="a", quantity=3)
        fresh.delete(items, "a")
    assert rows(engine, items) == []


def test_composite_keys_as_tuples_and_dicts(view: View, engine: Engine) -> None:
    with batch(view, engine):
        view.upsert(stock, warehouse="w1", sku="a", quantity=1)
        view.upsert(stock, warehouse="w2", sku="a", quantity=2)
        view.upsert(stock, {"warehouse": "w1", "sku": "b"}, quantity=3)
        assert view.get(stock, ("w1", "a")) == {"warehouse": "w1", "sku": "a", "quantity": 1}
        assert view.get(stock, {"sku": "a", "warehouse": "w2"})["quantity"] == 2  # type: ignore[index]
    with batch(View([stock]), engine) as fresh:
        assert fresh.update(stock, ("w1", "b"), quantity=4) is True
        assert fresh.update(stock, ("w9", "b"), quantity=4) is False
        fresh.delete(stock, {"warehouse": "w2", "sku": "a"})
    assert rows(engine, stock) == [
        {"warehouse": "w1", "sku": "a", "quantity": 1},
        {"warehouse": "w1", "sku": "b", "quantity": 4},
    ]


def test_mistakes_are_configuration_errors(view: View, engine: Engine) -> None:
    with batch(view, engine):
        with pytest.raises(ConfigurationError, match="no column"):
            view.upsert(items, sku="a", colour="red")
        with pytest.raises(ConfigurationError, match="no column"):
            view.update(items, "a", colour="red")
        with pytest.raises(ConfigurationError, match="needs the key column"):
            view.upsert(items, name="nameless")
        with pytest.raises(ConfigurationError, match="needs the key column"):
            view.upsert(stock, warehouse="w1", quantity=1)
        with pytest.raises(ConfigurationError, match="not one of this projection's view tables"):
            view.get(other, 1)
        with pytest.raises(ConfigurationError, match="not one of this projection's view tables"):
            view.upsert(other, id=1)
        with pytest.raises(ConfigurationError, match="2-column key"):
            view.get(stock, ("w1",))
        with pytest.raises(ConfigurationError, match="pass a tuple or dict"):
            view.get(stock, "w1")
        with pytest.raises(ConfigurationError, match="lacks column 'sku'"):
            view.delete(stock, {"warehouse": "w1"})
    assert rows(engine, items) == []
    assert rows(engine, stock) == []


def test_outside_a_batch_the_view_refuses_to_read(view: View) -> None:
    with pytest.raises(RuntimeError, match="inside a batch"):
        view.get(items, "a")


def test_a_failed_batch_leaves_the_tables_and_the_cache_unchanged(
    view: View, engine: Engine
) -> None:
    with batch(view, engine):
        view.upsert(items, sku="a", name="apple", quantity=1)
        view.upsert(items, sku="b", name="pear", quantity=2)
        view.upsert(stock, warehouse="w1", sku="a", quantity=5)
    committed = (rows(engine, items), rows(engine, stock))

    def changes() -> None:
        view.upsert(items, sku="a", quantity=100)
        view.update(items, "b", name="changed")
        view.delete(stock, ("w1", "a"))
        view.upsert(items, sku="c", name="new")
        view.flush()  # written inside the transaction, then rolled back

    failed_batch(view, engine, changes)
    assert (rows(engine, items), rows(engine, stock)) == committed
    with batch(view, engine):
        assert view.get(items, "a") == {"sku": "a", "name": "apple", "quantity": 1, "price": None}
        assert view.get(items, "b")["name"] == "pear"  # type: ignore[index]
        assert view.get(items, "c") is None
        assert view.get(stock, ("w1", "a")) == {"warehouse": "w1", "sku": "a", "quantity": 5}
        view.upsert(items, sku="a", quantity=view.get(items, "a")["quantity"] + 1)  # type: ignore[index]
    assert rows(engine, items)[0]["quantity"] == 2


def test_a_failed_batch_that_ran_sql_leaves_the_cache_unchanged(view: View, engine: Engine) -> None:
    with batch(view, engine):
        view.upsert(items, sku="a", name="apple", quantity=1)

    def changes() -> None:
        view.upsert(items, sku="a", quantity=50)
        view.execute(update(items).where(items.c.sku == "a").values(price=7))
        assert view.get(items, "a") == {"sku": "a", "name": "apple", "quantity": 50, "price": 7}

    failed_batch(view, engine, changes)
    with batch(view, engine):
        assert view.get(items, "a") == {"sku": "a", "name": "apple", "quantity": 1, "price": None}


def test_execute_runs_after_the_batch_so_far(view: View, engine: Engine) -> None:
    with batch(view, engine):
        view.upsert(items, sku="a", name="apple", quantity=1)
        view.upsert(items, sku="b", name="pear", quantity=2)
        total = view.execute(select(func.sum(items.c.quantity))).scalar_one()
        assert total == 3
        view.execute(update(items).values(price=10))
        assert view.get(items, "b") == {"sku": "b", "name": "pear", "quantity": 2, "price": 10}
        view.upsert(items, sku="b", quantity=4)
    assert rows(engine, items) == [
        {"sku": "a", "name": "apple", "quantity": 1, "price": 10},
        {"sku": "b", "name": "pear", "quantity": 4, "price": 10},
    ]


def test_many_rows_are_written_in_bulk_and_survive_cache_eviction(engine: Engine) -> None:
    small = View([items], cache_rows=50)
    small.mark_empty()  # a table created empty: rows not cached are known absent
    for round_ in range(3):
        with batch(small, engine):
            for i in range(120):
                row = small.get(items, f"s{i:03d}")
                quantity = (row["quantity"] if row else 0) + 1
                small.upsert(items, sku=f"s{i:03d}", quantity=quantity, price=round_)
    found = rows(engine, items)
    assert len(found) == 120
    assert {r["quantity"] for r in found} == {3}
    assert {r["price"] for r in found} == {2}


@pytest.mark.parametrize("known_empty", [True, False])
def test_new_rows_get_python_and_server_defaults(engine: Engine, known_empty: bool) -> None:
    view = View([stamped])
    if known_empty:
        view.mark_empty()  # what a worker does for tables that start empty
    with batch(view, engine):
        view.upsert(stamped, id="x", label="first")
    with batch(view, engine):
        row = view.get(stamped, "x")
        assert row is not None
        view.upsert(stamped, id="x", label="second")
    [stored] = rows(engine, stamped)
    assert stored["label"] == "second"
    assert stored["hits"] == 7
    assert stored["tag"] == "made"
    assert stored["created_at"] is not None


def test_bulk_writes_keep_every_value_of_every_type(view: View, engine: Engine) -> None:
    moment = datetime(2026, 5, 17, 8, 30, 15, 123456, tzinfo=UTC)
    written = {
        f"r{i}": {
            "amount": Decimal(f"{i}.25") if i % 3 else None,
            "at": moment + timedelta(minutes=i) if i % 4 else None,
            "ref": uuid4() if i % 5 else None,
            "flag": i % 2 == 0 if i % 6 else None,
            "big": 2**40 + i,
            "note": f"zoë's €{i}" if i % 7 else None,
        }
        for i in range(30)
    }
    with batch(view, engine):
        for key, values in written.items():
            view.upsert(typed, id=key, **values)  # many rows, one column set
    with batch(view, engine):
        # Mixed Python types in one column (int and Decimal), and a JSON column.
        view.upsert(typed, id="r1", amount=7)
        view.upsert(typed, id="r2", amount=Decimal("8.50"))
        view.upsert(typed, id="r3", doc={"tags": ["a", "b"]}, note="with a document")
        view.upsert(typed, id="r4", doc=None, note="without")
    with batch(View([typed]), engine) as fresh:  # rows never read: partial rows
        fresh.upsert(typed, id="r5", amount=9)
        fresh.upsert(typed, id="r6", amount=Decimal("9.75"))
    written["r5"]["amount"] = Decimal("9.00")
    written["r6"]["amount"] = Decimal("9.75")
    written["r1"]["amount"] = Decimal("7.00")
    written["r2"]["amount"] = Decimal("8.50")
    written["r3"].update(note="with a document")
    written["r4"].update(note="without")
    stored = {row.pop("id"): row for row in rows(engine, typed)}
    docs = {key: row.pop("doc") for key, row in stored.items()}
    assert docs["r3"] == {"tags": ["a", "b"]}
    assert {key for key, doc in docs.items() if doc is not None} == {"r3"}
    for row in stored.values():
        if row["at"] is not None and row["at"].tzinfo is None:  # SQLite keeps no zone
            row["at"] = row["at"].replace(tzinfo=UTC)
    assert stored == written


# -- increment ------------------------------------------------------------------------


def selects_during(engine: Engine, work: Callable[[], None]) -> list[str]:
    """The SELECT statements `work` sent to the database."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        statement: str = args[2]
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        work()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


def test_increment_adds_to_rows_it_never_read_without_reading_them(
    view: View, engine: Engine
) -> None:
    with batch(View([items]), engine) as earlier:
        earlier.upsert(items, sku="a", name="apple", quantity=5)
        earlier.upsert(items, sku="n", name="no price")  # price NULL: counts as 0

    def increments() -> None:
        with batch(view, engine):
            for sku in ("a", "b", "a", "n"):
                view.increment(items, sku, quantity=2, price=1)
            for i in range(50):  # a bulk statement, not one per row
                view.increment(items, f"k{i:02d}", quantity=i)

    assert selects_during(engine, increments) == []
    assert rows(engine, items)[:3] == [
        {"sku": "a", "name": "apple", "quantity": 9, "price": 2},
        {"sku": "b", "name": None, "quantity": 2, "price": 1},
        {"sku": "k00", "name": None, "quantity": 0, "price": None},
    ]
    found = {r["sku"]: r for r in rows(engine, items)}
    assert found["k49"]["quantity"] == 49
    assert found["n"] == {"sku": "n", "name": "no price", "quantity": 2, "price": 1}
    # Again, in a later batch: still added to what is stored.
    assert selects_during(engine, increments) == []
    assert {r["sku"]: r["quantity"] for r in rows(engine, items)}["a"] == 13


def test_increment_meets_gets_upserts_updates_and_deletes_of_the_same_row(
    view: View, engine: Engine
) -> None:
    with batch(view, engine):
        view.upsert(items, sku="a", name="apple", quantity=1)
        view.upsert(items, sku="d", name="doomed", quantity=1)
    with batch(View([items]), engine) as fresh:  # knows none of the rows
        fresh.increment(items, "a", quantity=2)
        assert fresh.get(items, "a") == {"sku": "a", "name": "apple", "quantity": 3, "price": None}
        fresh.increment(items, "a", quantity=10)
        assert fresh.get(items, "a")["quantity"] == 13  # type: ignore[index]
        fresh.increment(items, "b", quantity=4)
        fresh.upsert(items, sku="b", name="pear")  # keeps the increment
        fresh.upsert(items, sku="c", price=7)  # blind upsert, then an increment
        fresh.increment(items, "c", price=1, quantity=1)
        fresh.increment(items, "d", quantity=5)
        fresh.delete(items, "d")
        fresh.increment(items, "e", quantity=1)
        assert fresh.update(items, "e", name="egg")
    assert rows(engine, items) == [
        {"sku": "a", "name": "apple", "quantity": 13, "price": None},
        {"sku": "b", "name": "pear", "quantity": 4, "price": None},
        {"sku": "c", "name": None, "quantity": 1, "price": 8},
        {"sku": "e", "name": "egg", "quantity": 1, "price": None},
    ]


def test_increment_of_decimals_and_of_a_column_the_database_fills_in(
    view: View, engine: Engine
) -> None:
    with batch(view, engine):
        view.increment(typed, "t", amount=Decimal("0.10"), big=2**40)
        view.increment(typed, "t", amount=Decimal("0.20"), big=1)
        view.upsert(stamped, id="s", label="new")  # hits: server default 7
        view.increment(stamped, "s", hits=1)
    with batch(view, engine):
        view.increment(typed, "t", amount=Decimal("1.05"))
        assert view.get(typed, "t")["amount"] == Decimal("1.35")  # type: ignore[index]
    assert rows(engine, typed)[0]["amount"] == Decimal("1.35")
    assert rows(engine, typed)[0]["big"] == 2**40 + 1
    assert rows(engine, stamped)[0]["hits"] == 8


def test_increment_in_a_rebuilt_table_is_folded_in_memory(engine: Engine) -> None:
    fresh = View([items])
    fresh.mark_empty()  # as a rebuild's new tables are

    def increments() -> None:
        with batch(fresh, engine):
            fresh.increment(items, "a", quantity=1)
            fresh.increment(items, "a", quantity=1)
            assert fresh.get(items, "a") == {"sku": "a", "name": None, "quantity": 2, "price": None}

    assert selects_during(engine, increments) == []
    assert rows(engine, items) == [{"sku": "a", "name": None, "quantity": 2, "price": None}]


def test_increment_mistakes_are_configuration_errors(view: View, engine: Engine) -> None:
    with batch(view, engine):
        with pytest.raises(ConfigurationError, match="key column"):
            view.increment(items, "a", sku=1)
        with pytest.raises(ConfigurationError, match="no column"):
            view.increment(items, "a", weight=1)
        view.increment(items, "a")  # nothing to add: nothing written
    assert rows(engine, items) == []


def test_a_failed_batch_forgets_its_increments(view: View, engine: Engine) -> None:
    with batch(view, engine):
        view.increment(items, "a", quantity=1)

    def changes() -> None:
        view.increment(items, "a", quantity=100)
        view.increment(items, "b", quantity=100)
        view.flush()

    failed_batch(view, engine, changes)
    with batch(view, engine):
        view.increment(items, "a", quantity=1)
    assert [(r["sku"], r["quantity"]) for r in rows(engine, items)] == [("a", 2)]


@pytest.mark.postgres
def test_a_value_too_long_for_its_column_fails_the_batch_in_bulk_as_alone(
    database_url_factory: Callable[..., str],
) -> None:
    # SQLite does not enforce VARCHAR lengths; PostgreSQL refuses a longer value.
    engine = create_engine(database_url_factory("postgres"))
    metadata.create_all(engine)
    view = View([items])
    with batch(view, engine):
        view.upsert(items, sku="a", name="apple")

    def write(count: int) -> None:
        with batch(view, engine):
            for i in range(count):
                name = "x" * 101 if i == count - 1 else "ok"
                view.upsert(items, sku=f"n{i}", name=name, quantity=1)

    for count in (1, 3):  # one row alone, or the batch's bulk statement
        with pytest.raises(DBAPIError, match="too long"):
            write(count)
    assert rows(engine, items) == [{"sku": "a", "name": "apple", "quantity": 0, "price": None}]
    engine.dispose()


edge = Table(
    "vt_edge",
    metadata,
    Column("id", String(20), primary_key=True),
    Column("s", String(200)),
    Column("n", Numeric(40, 10)),
    Column("f", Float),
    Column("i", BigInteger),
    Column("b", Boolean),
    Column("u", Uuid),
    Column("t", DateTime(timezone=True)),
)
EDGE_ROWS: list[dict[str, Any]] = [
    {
        "s": 'quote " backslash \\ slash /',
        "n": Decimal("1.25"),
        "f": 0.1,
        "i": 2**63 - 1,
        "b": True,
        "u": uuid4(),
        "t": datetime(2026, 5, 17, 8, 30, 15, 123456, tzinfo=UTC),
    },
    {
        "s": "new\nline\ttab \x01 zoë €😀 \u2028",
        "n": Decimal("1E+2"),
        "f": -1.5e300,
        "i": -(2**63),
        "b": False,
        "u": None,
        "t": datetime(2026, 5, 17, 8, 30, 15, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    },
    {
        "s": "",
        "n": Decimal("-0.0000000001"),
        "f": 5e-324,
        "i": 0,
        "b": None,
        "u": uuid4(),
        "t": datetime(2026, 1, 1, 0, 0),  # no zone: the session's, as a single insert reads it
    },
    {
        "s": None,
        "n": Decimal("123456789012345678901234567890.123456789"),  # beyond a float
        "f": None,
        "i": None,
        "b": True,
        "u": None,
        "t": None,
    },
]
# Values JSON cannot carry exactly: the bulk write takes arrays for these batches.
# Awkward text beside the extremes of 64-bit integers.
EDGE_TEXT: list[dict[str, Any]] = [
    {"s": 'quote " backslash \\ slash / {"a": [1]}', "i": 2**63 - 1},
    {"s": "new\nline\ttab \x01 zoë €😀 \u2028", "i": -(2**63)},
    {"s": "", "i": 0},
    {"s": None, "i": None},
    {"s": "123", "i": 7},
]
EDGE_FALLBACKS: list[list[dict[str, Any]]] = [
    [{"f": float("nan")}, {"f": float("inf")}, {"f": 1.0}],
    [{"n": Decimal(2**70)}, {"n": 2**70}, {"n": Decimal("0.5")}],
    [{"i": 1}, {"i": 2**40}, {"i": None}],
]


def test_bulk_writes_store_what_single_row_writes_store(engine: Engine) -> None:
    """A batch of rows is one statement; a batch of one row is a plain insert:
    both must store the same values, whatever the characters and numbers."""
    view = View([edge])
    batches = [EDGE_ROWS, EDGE_TEXT, *EDGE_FALLBACKS]
    with batch(view, engine):  # every row of a batch in one bulk statement
        for n, rows_ in enumerate(batches):
            for i, values in enumerate(rows_):
                view.upsert(edge, id=f"bulk-{n}-{i}", **values)
    for n, rows_ in enumerate(batches):
        for i, values in enumerate(rows_):
            with batch(view, engine):  # one row per batch: an ordinary insert
                view.upsert(edge, id=f"one-{n}-{i}", **values)
    stored = {row.pop("id"): row for row in rows(engine, edge)}
    bulk = {key.removeprefix("bulk-"): row for key, row in stored.items() if "bulk" in key}
    one = {key.removeprefix("one-"): row for key, row in stored.items() if "one" in key}
    assert len(bulk) == len(one) == sum(len(b) for b in batches)
    assert repr(bulk) == repr(one)  # repr: NaN is not equal to itself
    assert bulk["0-1"]["s"] == EDGE_ROWS[1]["s"]
    assert bulk["0-0"]["i"] == 2**63 - 1


def test_a_row_reads_as_a_dict_and_by_attribute(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'rows.db'}")
    metadata_rows = MetaData()
    books = Table(
        "vr_books",
        metadata_rows,
        Column("book", String(20), primary_key=True),
        Column("title", String(100)),
    )
    metadata_rows.create_all(engine)
    view = View([books])
    with write_connection(engine) as conn, conn.begin():
        view.begin(conn)
        view.upsert(books, book="b1", title="Dune")
        row = view.get(books, "b1")
        assert row is not None
        assert (row["title"], row.title) == ("Dune", "Dune")
        with pytest.raises(AttributeError, match="no column 'author'"):
            _ = row.author
        view.flush()
    engine.dispose()
