"""The store's hot statements on the driver's connection: compiled once per
dialect, writing the same rows SQLAlchemy would, in transactions that behave
like SQLAlchemy's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from uuid import uuid4

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import psycopg
from sqlalchemy.exc import IntegrityError

from eventsource import Aggregate, Event, Repository, StoreError, on
from eventsource.errors import StoreUnavailable
from eventsource.events import StoredEvent
from eventsource.store import EventStore, schema
from eventsource.store.driver import compiled, driver_transaction
from eventsource.store.statements import (
    _COLUMN_NAMES,
    _insert_statement,
    _read_stream_statement,
    insert_on,
    load_stream_on,
    read_stream_on,
    sqlite_datetime,
)
from tests.conftest import PostgresDatabases


class DriverNoted(Event):
    event_type = "driver.noted"

    text: str


class DriverNote(Aggregate, type_name="driver_note"):
    texts: list[str] = []

    @on(DriverNoted)
    def _noted(self, event: DriverNoted) -> None:
        self.texts.append(event.text)


def _record(stream: str = "s-1", version: int = 1) -> StoredEvent:
    return StoredEvent(
        position=0,
        stream_id=f"driver_note:{stream}",
        aggregate_id=stream,
        aggregate_type="driver_note",
        version=version,
        event_type="driver.noted",
        schema_version=1,
        event_id=uuid4(),
        occurred_at=datetime(2026, 3, 4, 5, 6, 7, 89, tzinfo=UTC),
        payload='{"text":"x"}',
        metadata="{}",
    )


def test_a_statement_is_compiled_once_per_dialect_and_shared_by_its_engines(tmp_path) -> None:
    one = sa.create_engine(f"sqlite:///{tmp_path / 'one.db'}")
    two = sa.create_engine(f"sqlite:///{tmp_path / 'two.db'}")
    postgres = psycopg.dialect()
    first = compiled(one.dialect, "read_stream", _read_stream_statement)
    assert compiled(two.dialect, "read_stream", _read_stream_statement) is first
    assert "?" in first.sql
    assert first.names == ("stream_id", "after_version")
    other = compiled(postgres, "read_stream", _read_stream_statement)
    assert other is not first
    assert "%(stream_id)s" in other.sql
    assert other.names is None  # psycopg takes the values by name
    assert other.parameters({"stream_id": "a", "after_version": 0}) == {
        "stream_id": "a",
        "after_version": 0,
    }
    assert first.parameters({"after_version": 3, "stream_id": "a"}) == ("a", 3)
    one.dispose()
    two.dispose()


def test_the_sqlite_insert_takes_the_values_in_the_order_the_store_builds_them() -> None:
    statement = compiled(sqlite.pysqlite.dialect(), "insert_event", _insert_statement)
    assert statement.names == _COLUMN_NAMES


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 6, 1, 12, 30),
    ],
)
def test_sqlite_times_are_the_text_sqlalchemy_writes(moment: datetime) -> None:
    dialect = sqlite.pysqlite.dialect()
    column_type = schema.events.c.occurred_at.type
    process = column_type.dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    assert sqlite_datetime(moment) == process(moment)


def test_sqlite_times_in_another_zone_are_stored_in_utc() -> None:
    moment = datetime(2026, 6, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    assert sqlite_datetime(moment) == "2026-06-01 12:30:00.000000"


def test_appended_rows_read_back_through_sqlalchemy_as_written(store: EventStore) -> None:
    records = [_record(version=1), _record(version=2)]
    positions = store.append_records(records)
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(schema.events).order_by(schema.events.c.global_position)
        ).all()
    assert [row.global_position for row in rows] == positions
    for row, record in zip(rows, records, strict=True):
        assert row.event_id == record.event_id
        occurred_at = row.occurred_at
        if occurred_at.tzinfo is None:  # SQLite hands the stored UTC text back naive
            occurred_at = occurred_at.replace(tzinfo=UTC)
        assert occurred_at == record.occurred_at
        assert (row.stream_id, row.version, row.payload) == (
            record.stream_id,
            record.version,
            record.payload,
        )
    assert store.read_stream("driver_note:s-1") == [
        r._replace(position=p) for r, p in zip(records, positions, strict=True)
    ]


def test_loading_an_aggregates_stream_reads_what_read_stream_reads(store: EventStore) -> None:
    note = DriverNote("n-1")
    for text in ("a", "b", "c"):
        note.trigger(DriverNoted(text=text))
    Repository(store, DriverNote).save(note)
    with driver_transaction(store.engine, write=False) as conn:
        for after in (0, 1, 3):
            loaded = load_stream_on(conn, "driver_note", "n-1", after)
            assert loaded == read_stream_on(conn, "driver_note:n-1", after)
        assert len(load_stream_on(conn, "driver_note", "n-1", 0)) == 3
        assert load_stream_on(conn, "driver_note", "n-2", 0) == []


def test_a_failed_driver_transaction_rolls_back_with_sqlalchemys_error(store: EventStore) -> None:
    store.append_records([_record(version=1)])

    def both() -> None:
        with driver_transaction(store.engine, write=True) as conn:
            insert_on(conn, [_record(stream="s-2", version=1)])
            insert_on(conn, [_record(version=1)])  # that version is taken

    with pytest.raises(IntegrityError):
        both()
    assert store.stream_versions(["driver_note:s-1", "driver_note:s-2"]) == {"driver_note:s-1": 1}
    store.append_records([_record(stream="s-2", version=1)])  # the connection still works


def test_an_error_in_the_block_rolls_back(store: EventStore) -> None:
    def failing() -> None:
        with driver_transaction(store.engine, write=True) as conn:
            insert_on(conn, [_record(version=1)])
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        failing()
    assert store.head_position() == 0


def test_a_save_on_a_callers_connection_commits_with_the_callers_transaction(
    store: EventStore,
) -> None:
    repository = Repository(store, DriverNote, snapshot_every=2)
    note = DriverNote("n-1")
    note.trigger(DriverNoted(text="a"))
    note.trigger(DriverNoted(text="b"))
    with store.transaction() as conn:
        repository.save(note, connection=conn)
        assert repository.get("n-1", connection=conn).texts == ["a", "b"]
        assert store.load_snapshot("driver_note:n-1", connection=conn) is not None

    def rolled_back() -> None:
        with store.transaction() as conn:
            note.trigger(DriverNoted(text="c"))
            repository.save(note, connection=conn)
            raise RuntimeError("roll it back")

    with pytest.raises(RuntimeError):
        rolled_back()
    assert repository.get("n-1").texts == ["a", "b"]


@pytest.mark.postgres
def test_a_connection_killed_under_the_store_is_replaced(
    postgres_databases: PostgresDatabases,
) -> None:
    store = EventStore(postgres_databases.create(), context="test")
    store.create_schema()
    repository = Repository(store, DriverNote)
    try:
        note = DriverNote("n-1")
        note.trigger(DriverNoted(text="a"))
        repository.save(note)
        database = store.engine.url.database
        with postgres_databases.engine.connect() as admin:
            killed = admin.exec_driver_sql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                f" WHERE datname = '{database}' AND pid <> pg_backend_pid()"
            ).scalar_one()
        assert killed >= 1
        note.trigger(DriverNoted(text="b"))
        with pytest.raises(StoreUnavailable):  # passing: a retry succeeds
            repository.save(note)  # on the pooled connection that was killed
        repository.save(note)  # a new connection: the dead one left the pool
        assert repository.get("n-1").texts == ["a", "b"]
    finally:
        store.close()


def test_a_store_without_its_tables_fails_for_good_naming_the_database(tmp_path) -> None:
    store = EventStore(f"sqlite:///{tmp_path / 'bare.db'}", context="test")  # no create_schema
    note = DriverNote("n-1")
    note.trigger(DriverNoted(text="a"))
    try:
        with pytest.raises(StoreError, match="no such table") as saving:
            Repository(store, DriverNote).save(note)
        assert not isinstance(saving.value, StoreUnavailable)
        assert "bare.db" in str(saving.value)
        with pytest.raises(StoreError, match="no such table"):
            Repository(store, DriverNote).get("n-1")
    finally:
        store.close()
