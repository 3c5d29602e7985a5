"""The pytest plugin an installed eventsource registers, seen from an app's own test run.

Each test runs pytest in a fresh process, in a folder of its own with no
configuration: the fixtures come from the `pytest11` entry point alone.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.conftest import require_postgres

APP_TEST = """
from eventsource import EventStore, Repository


def test_throwaway_stores(event_store, event_store_factory):
    assert isinstance(event_store, EventStore)
    assert event_store.context == "test"
    assert event_store.head_position() == 0  # migrated and empty
    orders = event_store_factory(context="orders")
    bare = event_store_factory(migrate=False)
    assert orders.context == "orders"
    assert len({s.engine.url for s in (event_store, orders, bare)}) == 3
    print("DATABASE", event_store.engine.dialect.name, event_store.engine.url.database)
"""


def run_pytest(folder: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """pytest in `folder`, warnings as errors; its output (it must pass)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTSOURCE_", "PYTEST_"))}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-W", "error", "-p", "no:cacheprovider", "-s", *args],
        cwd=folder,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    return done.stdout


def app(tmp_path: Path, source: str = APP_TEST) -> Path:
    (tmp_path / "test_app.py").write_text(textwrap.dedent(source))
    return tmp_path


def databases_in(output: str) -> list[tuple[str, str]]:
    return re.findall(r"DATABASE (\w+) (\S+)", output)


def test_an_app_gets_sqlite_throwaway_stores(tmp_path: Path) -> None:
    output = run_pytest(app(tmp_path))
    [(dialect, path)] = databases_in(output)
    assert dialect == "sqlite"
    assert path.endswith(".db")


def test_the_plugin_can_be_disabled(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSOURCE_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:eventsource", "-p", "no:cacheprovider"],
        cwd=app(tmp_path),
        env=clean,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1
    assert "fixture 'event_store' not found" in done.stdout


@pytest.mark.postgres
@pytest.mark.parametrize("how", ["environment", "option"])
def test_an_app_gets_postgresql_databases_that_are_dropped_after(tmp_path: Path, how: str) -> None:
    url = require_postgres()
    if how == "environment":
        output = run_pytest(app(tmp_path), env={"EVENTSOURCE_TEST_DATABASE_URL": url})
    else:
        output = run_pytest(app(tmp_path), f"--eventsource-database-url={url}")
    [(dialect, name)] = databases_in(output)
    assert dialect == "postgresql"
    assert name.startswith("es_test_")
    admin = sa.create_engine(make_url(url).set(drivername="postgresql+psycopg"))
    try:
        with admin.connect() as conn:
            names = conn.execute(sa.text("SELECT datname FROM pg_database")).scalars().all()
    finally:
        admin.dispose()
    assert name not in names


STUTTERING_LOG = '''
import pytest

from eventsource import EventStore
from eventsource.bus.sqllog import SqlLogConsumer
from eventsource.testing.contracts import LogConsumerContract, LogUnderTest


class StutteringConsumer(SqlLogConsumer):
    """Hands out the first message of every batch twice."""

    def poll(self, max_messages, timeout):
        messages = super().poll(max_messages, timeout)
        return messages[:1] + messages


class StutteringLog(LogUnderTest):
    def make_consumer(self):
        return StutteringConsumer({self.store.context: self.store})


class TestStutteringLog(LogConsumerContract):
    @pytest.fixture
    def log_under_test(self, event_store_factory):
        with StutteringLog(event_store_factory(context="shop")) as log:
            yield log
'''


def test_the_contract_catches_a_backend_that_delivers_twice(tmp_path: Path) -> None:
    folder = app(tmp_path, STUTTERING_LOG)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSOURCE_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-W", "error", "-p", "no:cacheprovider", "-rA"],
        cwd=folder,
        env=clean,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 1, out
    failed = set(re.findall(r"^FAILED test_app.py::TestStutteringLog::(\w+)", out, re.MULTILINE))
    assert "test_every_event_is_read_once_in_order" in failed
    assert "test_ends_is_where_a_consumer_that_skips_history_starts" in failed
    # The shipped asserts are rewritten: a failure shows the values compared.
    assert "assert Counter({" in out
