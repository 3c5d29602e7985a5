"""Workers that start together create their view tables once, without failing."""

from __future__ import annotations

import threading

from sqlalchemy import Column, Integer, MetaData, String, Table, inspect

from eventsource.projections.tables import create_missing
from eventsource.store.engine import create_engine, write_connection
from tests.conftest import unique


def test_concurrent_starts_create_each_table_once(database_url: str) -> None:
    engine = create_engine(database_url)
    starters = 6
    names = [unique("pj_race") for _ in range(4)]
    metadata = MetaData()
    tables = [
        Table(name, metadata, Column("key", String(50), primary_key=True), Column("n", Integer))
        for name in names
    ]
    barrier = threading.Barrier(starters)
    failures: list[BaseException] = []

    def start() -> None:
        try:
            with write_connection(engine) as conn:
                barrier.wait(10)
                with conn.begin():
                    create_missing(conn, tables)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive(), "a thread the test started is still running"

    assert failures == []
    assert set(names) <= set(inspect(engine).get_table_names())
    engine.dispose()
