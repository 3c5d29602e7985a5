"""Two workers that share a view row (each owns some partitions) never lose an update.

A row that does not exist yet cannot be locked with FOR UPDATE, so two
workers that both read it as absent would both insert "count = 1". The
shared view locks the key itself first; the second worker then reads the
row the first one committed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import BigInteger, Column, MetaData, String, Table, select

from eventsource import View
from eventsource.store.engine import create_engine, write_connection

metadata = MetaData()
counters = Table(
    "vts_counters",
    metadata,
    Column("key", String(40), primary_key=True),
    Column("count", BigInteger, nullable=False),
)


@pytest.mark.postgres
def test_two_shared_views_counting_a_new_row_both_count(
    database_url_factory: Callable[..., str],
) -> None:
    engine = create_engine(database_url_factory("postgres"))
    metadata.create_all(engine)
    first_read = threading.Event()
    errors: list[BaseException] = []

    def count(hold: bool) -> None:
        view = View([counters])
        view.shared = True
        try:
            with write_connection(engine) as conn, conn.begin():
                view.begin(conn)
                row = view.get(counters, "k")
                if hold:
                    first_read.set()
                    threading.Event().wait(0.5)  # the other worker tries meanwhile
                view.upsert(counters, key="k", count=(row["count"] if row else 0) + 1)
                view.flush()
            view.commit()
        except BaseException as exc:
            errors.append(exc)

    holder = threading.Thread(target=count, args=(True,))
    holder.start()
    assert first_read.wait(10)
    other = threading.Thread(target=count, args=(False,))
    other.start()
    holder.join(30)
    assert not holder.is_alive(), "a thread the test started is still running"
    other.join(30)
    assert not other.is_alive(), "a thread the test started is still running"
    assert errors == []
    with engine.connect() as conn:
        assert conn.execute(select(counters.c["count"])).scalar_one() == 2
    engine.dispose()


@pytest.mark.postgres
def test_two_workers_writing_the_same_rows_in_opposite_orders_never_deadlock(
    database_url_factory: Callable[..., str],
) -> None:
    # Each batch adds to the same 60 counters, one in ascending order and one
    # in descending: rows locked in arrival order would deadlock. The bulk
    # writer sorts by key, so one waits for the other.
    engine = create_engine(database_url_factory("postgres"))
    metadata.create_all(engine)
    keys = [f"k{i:02d}" for i in range(60)]
    rounds = 15
    errors: list[BaseException] = []
    both_folded = threading.Barrier(2)

    def add(order: list[str]) -> None:
        view = View([counters])
        view.shared = True
        try:
            for _ in range(rounds):
                with write_connection(engine) as conn, conn.begin():
                    view.begin(conn)
                    for key in order:
                        view.increment(counters, key, count=1)
                    both_folded.wait(10)
                    view.flush()
                view.commit()
        except BaseException as exc:
            errors.append(exc)
            both_folded.abort()

    threads = [
        threading.Thread(target=add, args=(order,)) for order in (keys, list(reversed(keys)))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
        assert not thread.is_alive(), "a thread the test started is still running"
    assert errors == []
    with engine.connect() as conn:
        counts = dict(conn.execute(select(counters.c.key, counters.c["count"])).all())
    engine.dispose()
    assert counts == dict.fromkeys(keys, 2 * rounds)


@pytest.mark.postgres
def test_a_database_error_never_shows_the_rows_values(
    database_url_factory: Callable[..., str],
) -> None:
    # A NOT NULL column left NULL: the error names the statement, not the row.
    engine = create_engine(database_url_factory("postgres"))
    metadata.create_all(engine)
    view = View([counters])
    secret = "a-secret-customer@example.com"
    with write_connection(engine) as conn, conn.begin():
        view.begin(conn)
        view.upsert(counters, key=secret, count=None)
        view.upsert(counters, key="another", count=None)
        with pytest.raises(Exception, match="parameters hidden") as caught:
            view.flush()
        conn.rollback()
    engine.dispose()
    said = str(caught.value)
    assert "SQL parameters hidden" in said
    assert secret not in said.split("DETAIL", maxsplit=1)[0]
