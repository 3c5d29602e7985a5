"""The SQL event store's contract, on every backend."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory

from eventsource import (
    Aggregate,
    ConcurrencyError,
    ConfigurationError,
    DecodeError,
    Event,
    Repository,
    UnknownEventType,
    on,
    upcaster,
)
from eventsource.events import StoredEvent
from eventsource.store import EventStore, schema
from eventsource.store.migrate import migrations_folder


class StoreAdded(Event):
    event_type = "store.added"

    item: str
    quantity: int = 1


class StoreMoved(Event):
    event_type = "store.moved"
    schema_version = 2

    to: str
    reason: str


@upcaster(StoreMoved, from_version=1)
def _moved_v1(payload: dict[str, Any]) -> dict[str, Any]:
    return {"to": payload["destination"], "reason": "unknown"}


class StoreBasket(Aggregate):
    items: list[str] = []

    @on(StoreAdded)
    def _added(self, event: StoreAdded) -> None:
        self.items.append(event.item)

    @on(StoreMoved)
    def _moved(self, event: StoreMoved) -> None:
        self.items.append(f"->{event.to}")


class StoreShelf(Aggregate):
    @on(StoreAdded)
    def _added(self, event: StoreAdded) -> None:
        pass


def basket(basket_id: str, *items: str, start: StoreBasket | None = None) -> StoreBasket:
    aggregate = start or StoreBasket(basket_id)
    for item in items:
        aggregate.trigger(StoreAdded(item=item))
    return aggregate


def shelf(shelf_id: str, count: int) -> StoreShelf:
    aggregate = StoreShelf(shelf_id)
    for i in range(count):
        aggregate.trigger(StoreAdded(item=f"s{i}"))
    return aggregate


def insert_raw(store: EventStore, **overrides: Any) -> None:
    """Insert a row with plain SQL, as a buggy tool or a manual fix might."""
    values: dict[str, Any] = {
        "stream_id": "store_basket:raw",
        "aggregate_id": "raw",
        "aggregate_type": "store_basket",
        "version": 1,
        "event_type": "store.added",
        "schema_version": 1,
        "event_id": uuid4(),
        "occurred_at": datetime(2024, 1, 1, tzinfo=UTC),
        "payload": '{"item": "x"}',
        "metadata": "{}",
    }
    values.update(overrides)
    columns = ", ".join(values)
    statement = sa.text(
        f"INSERT INTO events ({columns}) VALUES ({', '.join(f':{c}' for c in values)})"
    ).bindparams(  # the stored forms of UUIDs and timestamps differ by database
        sa.bindparam("event_id", type_=sa.Uuid()),
        sa.bindparam("occurred_at", type_=sa.DateTime(timezone=True)),
    )
    with store.engine.begin() as conn:
        conn.execute(statement, values)


def migrations_heads() -> list[str]:
    """The newest revision of each branch of the migrations."""
    config = Config()
    config.set_main_option("script_location", str(migrations_folder()))
    return sorted(ScriptDirectory.from_config(config).get_heads())


class Abort(Exception):
    """Raised to roll a transaction back."""


def positions(records: list[StoredEvent]) -> list[int]:
    return [r.position for r in records]


# -- append and read ------------------------------------------------------------


def test_an_empty_store(store: EventStore) -> None:
    assert store.head_position() == 0
    assert store.read_log() == []
    assert store.read_stream("store_basket:none") == []
    assert store.stream_versions(["store_basket:none"]) == {}


def test_append_then_read_stream_and_log(store: EventStore) -> None:
    first = basket("b1", "apple", "pear")
    second = shelf("s1", 2)
    appended = store.append([*first.pending_events, *second.pending_events])

    assert len(appended) == 4
    assert appended == sorted(appended)
    assert len(set(appended)) == 4
    assert store.head_position() == appended[-1]

    log = store.read_log()
    assert positions(log) == appended
    assert [(r.stream_id, r.version, r.event_type) for r in log] == [
        ("store_basket:b1", 1, "store.added"),
        ("store_basket:b1", 2, "store.added"),
        ("store_shelf:s1", 1, "store.added"),
        ("store_shelf:s1", 2, "store.added"),
    ]
    stream = store.read_stream("store_basket:b1")
    assert stream == log[:2]
    assert store.read_stream("store_basket:b1", after_version=1) == log[1:2]
    assert store.read_stream("store_basket:b1", after_version=2) == []

    decoded = [store.codec.decode(r) for r in stream]
    originals = first.pending_events
    assert [e.model_dump(exclude={"position"}) for e in decoded] == [
        e.model_dump(exclude={"position"}) for e in originals
    ]
    assert [e.position for e in decoded] == appended[:2]
    assert all(r.occurred_at.tzinfo is not None for r in log)
    assert [e.occurred_at for e in decoded] == [e.occurred_at for e in originals]


def test_read_log_pages_and_filters(store: EventStore) -> None:
    store.append(basket("b1", "a", "b", "c").pending_events)
    store.append(shelf("s1", 3).pending_events)
    store.append(basket("b2", "d").pending_events)
    everything = store.read_log()
    assert len(everything) == 7

    paged: list[StoredEvent] = []
    after = 0
    while batch := store.read_log(after, limit=2):
        assert len(batch) <= 2
        paged.extend(batch)
        after = batch[-1].position
    assert paged == everything

    middle = everything[3].position
    assert store.read_log(middle) == everything[4:]
    assert store.read_log(everything[-1].position) == []

    baskets = store.read_log(aggregate_types=["store_basket"])
    assert [r.stream_id for r in baskets] == ["store_basket:b1"] * 3 + ["store_basket:b2"]
    assert store.read_log(aggregate_types=[]) == []
    assert store.read_log(aggregate_types=["store_shelf", "store_basket"]) == everything
    assert store.head_position(aggregate_types=["store_shelf"]) == everything[5].position
    assert store.head_position(aggregate_types=["nothing"]) == 0
    assert store.read_events(everything[5].position)[0].aggregate_id == "b2"


def test_read_log_has_a_default_limit(store: EventStore) -> None:
    store.append(shelf("big", 1001).pending_events)
    assert len(store.read_log()) == 1000
    assert len(store.read_log(limit=5000)) == 1001


def test_stream_versions(store: EventStore) -> None:
    store.append([*basket("b1", "a", "b").pending_events, *shelf("s1", 1).pending_events])
    assert store.stream_versions(["store_basket:b1", "store_shelf:s1", "store_shelf:none"]) == {
        "store_basket:b1": 2,
        "store_shelf:s1": 1,
    }
    assert store.has_events([("store_basket:b1", 2), ("store_basket:b1", 3)]) == {
        ("store_basket:b1", 2)
    }


def test_an_append_that_reuses_a_version_records_nothing(store: EventStore) -> None:
    store.append(basket("b1", "a").pending_events)
    head = store.head_position()
    rival = basket("b1", "b")  # also version 1 of store_basket:b1
    fresh = basket("b2", "c")
    with pytest.raises(ConcurrencyError) as caught:
        store.append([*fresh.pending_events, *rival.pending_events])
    assert (caught.value.stream_id, caught.value.actual_version) == ("store_basket:b1", 1)
    assert store.head_position() == head
    assert store.read_stream("store_basket:b2") == []


def test_a_rolled_back_transaction_records_nothing(store: EventStore) -> None:
    def append_then_fail() -> None:
        with store.transaction() as conn:
            store.append(basket("b1", "a").pending_events, connection=conn)
            Repository(store, StoreShelf).save(shelf("s1", 2), connection=conn)
            raise Abort

    with pytest.raises(Abort):
        append_then_fail()
    assert store.read_log() == []


def test_appends_and_saves_share_a_callers_transaction(store: EventStore) -> None:
    with store.transaction() as conn:
        store.append(basket("b1", "a").pending_events, connection=conn)
        last = Repository(store, StoreShelf).save(shelf("s1", 2), connection=conn)
        assert store.head_position(connection=conn) == last
    assert [r.stream_id for r in store.read_log()] == ["store_basket:b1"] + ["store_shelf:s1"] * 2


# -- schema --------------------------------------------------------------------


def test_create_schema_is_idempotent(store_factory, database_url: str) -> None:
    store: EventStore = store_factory(url=database_url)
    store.append(basket("b1", "a", "b").pending_events)
    store.create_schema()
    store.create_schema()
    with EventStore(database_url, context="other") as second:
        second.create_schema()
        assert len(second.read_log()) == 2
    assert len(store.read_log()) == 2
    with store.engine.connect() as conn:
        versions = conn.execute(
            sa.text("SELECT version_num FROM eventsource_alembic_version")
        ).all()
    assert sorted(v[0] for v in versions) == migrations_heads()
    store.append(basket("b1", "c", start=Repository(store, StoreBasket).get("b1")).pending_events)
    assert store.stream_versions(["store_basket:b1"]) == {"store_basket:b1": 3}


def test_schema_module_matches_the_migrations(store: EventStore) -> None:
    inspector = sa.inspect(store.engine)
    for table in (schema.events, schema.snapshots):
        columns = {c["name"]: c for c in inspector.get_columns(table.name)}
        assert list(columns) == [c.name for c in table.columns]
        for column in table.columns:
            assert columns[column.name]["nullable"] == column.nullable, column.name
    uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("events")}
    assert {("stream_id", "version"), ("event_id",)} <= uniques


# -- immutability --------------------------------------------------------------


def test_update_and_delete_of_events_are_rejected_by_the_database(store: EventStore) -> None:
    store.append(basket("b1", "a", "b").pending_events)
    before = store.read_log()
    statements = [
        'UPDATE events SET payload = \'{"item": "forged"}\' WHERE version = 1',
        "UPDATE events SET version = version + 10",
        "DELETE FROM events WHERE version = 2",
        "DELETE FROM events",
    ]
    for statement in statements:
        with (
            pytest.raises(sa.exc.DBAPIError, match="events are immutable"),
            store.engine.begin() as conn,
        ):
            conn.execute(sa.text(statement))
    assert store.read_log() == before


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_truncate_of_events_is_rejected_on_postgresql(store: EventStore) -> None:
    store.append(basket("b1", "a").pending_events)
    with (
        pytest.raises(sa.exc.DBAPIError, match="events are immutable: TRUNCATE"),
        store.engine.begin() as conn,
    ):
        conn.execute(sa.text("TRUNCATE events"))
    assert len(store.read_log()) == 1


def test_snapshots_may_be_replaced(store: EventStore) -> None:
    class StoreSnapshotted(Aggregate, snapshot_every=1):
        count: int = 0

        @on(StoreAdded)
        def _added(self, event: StoreAdded) -> None:
            self.count += 1

    repository = Repository(store, StoreSnapshotted)
    aggregate = StoreSnapshotted("snap")
    aggregate.trigger(StoreAdded(item="a"))
    repository.save(aggregate)
    aggregate.trigger(StoreAdded(item="b"))
    repository.save(aggregate)
    found = store.load_snapshot("store_snapshotted:snap")
    assert found is not None
    assert found[0] == 2


# -- bad rows ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("garbage \x01 not json", "Invalid JSON"),
        ('{"item": 5}', "item: Input should be a valid string"),
        ('{"quantity": 2}', "item: Field required"),
    ],
)
def test_a_corrupted_row_is_a_decode_error_naming_stream_version_and_type(
    store: EventStore, payload: str, reason: str
) -> None:
    store.append(basket("raw", "fine").pending_events)
    insert_raw(store, version=2, payload=payload)

    with pytest.raises(DecodeError) as caught:
        store.read_events()
    error = caught.value
    assert (error.event_type, error.stream_id, error.version) == (
        "store.added",
        "store_basket:raw",
        2,
    )
    assert reason in str(error)
    for part in ("'store.added'", "'store_basket:raw'", "version=2"):
        assert part in str(error)

    # Loading the aggregate fails the same way; no half-loaded aggregate comes back.
    with pytest.raises(DecodeError) as loading:
        Repository(store, StoreBasket).get("raw")
    assert (loading.value.stream_id, loading.value.version) == ("store_basket:raw", 2)
    # Reading the raw records still works: the log itself is intact.
    assert [r.version for r in store.read_stream("store_basket:raw")] == [1, 2]


def test_a_row_of_an_unknown_type_is_unknown_event_type(store: EventStore) -> None:
    insert_raw(store, event_type="store.from_the_future", version=1)
    with pytest.raises(UnknownEventType) as caught:
        Repository(store, StoreBasket).get("raw")
    error = caught.value
    assert (error.event_type, error.stream_id, error.version) == (
        "store.from_the_future",
        "store_basket:raw",
        1,
    )


def test_old_rows_are_upcast_on_read_and_never_rewritten(store: EventStore) -> None:
    insert_raw(
        store,
        event_type="store.moved",
        schema_version=1,
        payload='{"destination": "attic"}',
    )
    loaded = Repository(store, StoreBasket).get("raw")
    assert loaded.items == ["->attic"]
    event = store.read_events()[0]
    assert isinstance(event, StoreMoved)
    assert (event.to, event.reason) == ("attic", "unknown")
    [record] = store.read_log()
    assert (record.schema_version, record.payload) == (1, '{"destination": "attic"}')

    # New events are stored at the current schema version.
    loaded.trigger(StoreMoved(to="cellar", reason="space"))
    Repository(store, StoreBasket).save(loaded)
    assert store.read_log()[-1].schema_version == 2


# -- positions -----------------------------------------------------------------


def test_readers_continue_across_gaps_in_positions(store: EventStore, backend: str) -> None:
    def append_then_fail() -> None:
        with store.transaction() as conn:
            store.append(shelf("lost", 3).pending_events, connection=conn)
            raise Abort

    store.append(basket("b1", "a", "b").pending_events)
    with pytest.raises(Abort):
        append_then_fail()
    if backend == "sqlite":
        # SQLite hands a rolled-back position out again; leave a hole explicitly.
        insert_raw(store, global_position=store.head_position() + 10)
    store.append(basket("b2", "c", "d").pending_events)

    log = store.read_log()
    found = positions(log)
    assert found == sorted(found)
    assert len(found) == 4 + (backend == "sqlite")
    assert found[-1] - found[0] + 1 > len(found), "the test needs a gap"
    assert not store.read_stream("store_shelf:lost")

    # One at a time, continuing from the last position seen, finds every event.
    seen: list[StoredEvent] = []
    after = 0
    while batch := store.read_log(after, limit=1):
        seen.extend(batch)
        after = batch[-1].position
    assert seen == log
    # Starting inside a gap continues with the next stored event.
    gap_start = next(p + 1 for p, q in itertools.pairwise(found) if q > p + 1)
    assert store.read_log(gap_start)[0] == log[found.index(gap_start - 1) + 1]


# -- configuration -------------------------------------------------------------


def test_unsupported_databases_and_bad_contexts_are_configuration_errors(tmp_path) -> None:
    with pytest.raises(ConfigurationError, match="unsupported database 'mysql'"):
        EventStore("mysql://user:secret@localhost/db", context="x")
    with pytest.raises(ConfigurationError, match="context name"):
        EventStore(f"sqlite:///{tmp_path / 'x.db'}", context="Bad Context")


def test_sqlite_stores_run_in_wal_mode(tmp_path) -> None:
    with EventStore(f"sqlite:///{tmp_path / 'wal.db'}", context="wal") as store:
        store.create_schema()
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
