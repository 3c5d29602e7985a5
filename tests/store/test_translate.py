"""Database errors arrive as two kinds: `StoreUnavailable` (retried) and `StoreError` (not)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from eventsource import EventStore
from eventsource.errors import StoreError, StoreUnavailable
from eventsource.store.engine import create_engine
from tests.conftest import require_postgres


def connect(url: str) -> None:
    options = {"connect_args": {"connect_timeout": 3}} if url.startswith("postgresql") else {}
    engine = create_engine(url, **options)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()


def server_url(**changes: object) -> str:
    url = make_url(require_postgres()).set(drivername="postgresql+psycopg", **changes)
    return url.render_as_string(hide_password=False)


@pytest.mark.postgres
def test_a_refused_login_is_for_good() -> None:
    with pytest.raises(StoreError, match="password authentication failed") as caught:
        connect(server_url(password="not-the-password"))
    assert not isinstance(caught.value, StoreUnavailable)


@pytest.mark.postgres
def test_a_database_that_does_not_exist_is_for_good() -> None:
    with pytest.raises(StoreError, match="does not exist") as caught:
        connect(server_url(database="no_such_database_here"))
    assert not isinstance(caught.value, StoreUnavailable)


@pytest.mark.postgres
def test_a_server_that_does_not_listen_is_passing() -> None:
    with pytest.raises(StoreUnavailable, match="Connection refused"):
        connect(server_url(port=1))


@pytest.mark.postgres
def test_a_connection_the_server_ends_is_passing(
    database_url_factory: Callable[[str], str],
) -> None:
    store = EventStore(database_url_factory("postgres"), context="t")
    store.create_schema()
    try:
        with store.engine.connect() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with store.engine.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                other.commit()
            with pytest.raises(StoreUnavailable):
                conn.execute(text("SELECT 1"))
        assert store.head_position() == 0  # the pool recovers by itself
    finally:
        store.close()


@pytest.mark.postgres
def test_a_deadlock_victim_is_passing(database_url_factory: Callable[[str], str]) -> None:
    engine = create_engine(database_url_factory("postgres"))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (k int PRIMARY KEY, v int)"))
        conn.execute(text("INSERT INTO t VALUES (1, 0), (2, 0)"))
    errors: list[BaseException] = []
    both_locked = threading.Barrier(2)

    def cross(first: int, second: int) -> None:
        try:
            with engine.begin() as conn:
                conn.execute(text("UPDATE t SET v = v + 1 WHERE k = :k"), {"k": first})
                both_locked.wait(5)
                conn.execute(text("UPDATE t SET v = v + 1 WHERE k = :k"), {"k": second})
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=cross, args=pair) for pair in ((1, 2), (2, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    engine.dispose()
    assert len(errors) == 1
    assert isinstance(errors[0], StoreUnavailable)
    assert "deadlock" in str(errors[0])


def test_sqlite_in_a_folder_that_does_not_exist_is_for_good(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unable to open database file") as caught:
        connect(f"sqlite:///{tmp_path}/no/such/folder/x.db")
    assert not isinstance(caught.value, StoreUnavailable)


def test_a_missing_sqlite_table_is_for_good(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/x.db")
    try:
        with pytest.raises(StoreError, match="no such table") as caught, engine.connect() as conn:
            conn.execute(text("SELECT * FROM nowhere"))
        assert not isinstance(caught.value, StoreUnavailable)
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("action", ["save", "get"])
def test_saves_and_loads_on_a_server_that_does_not_listen_are_passing(action: str) -> None:
    from eventsource import Repository
    from tests.projections.apps import PjAccount

    with EventStore(server_url(port=1), context="t") as store:
        repository = Repository(store, PjAccount)
        call = (
            (lambda: repository.save(PjAccount.open("a-1", "owner")))
            if action == "save"
            else (lambda: repository.get("a-1"))
        )
        with pytest.raises(StoreUnavailable, match="Connection refused"):
            call()
