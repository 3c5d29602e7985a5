"""Databases made while the migrations were one linear chain upgrade cleanly.

`linear_history/` is a frozen copy of those migrations (revisions 0001, 0002,
0003). Each test makes a database with it, records data, then upgrades it
with today's two branches: nothing is created twice and nothing is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from eventsource import Aggregate, Event, Repository, on
from eventsource.store import EventStore, upgrade_schema
from eventsource.store.engine import create_engine, write_connection
from tests.migrations.test_branches import (
    LINEAR_ERA,
    RUNTIME_TABLES,
    STORE_TABLES,
    current_heads,
    stamped,
)

LINEAR_HISTORY = Path(__file__).parent / "linear_history"


class LhOpened(Event):
    event_type = "lh.opened"

    owner: str


class LhAccount(Aggregate, type_name="lh_account"):
    owner: str = ""

    @classmethod
    def open(cls, account_id: str, owner: str) -> LhAccount:
        account = cls(account_id)
        account.trigger(LhOpened(owner=owner))
        return account

    @on(LhOpened)
    def _opened(self, event: LhOpened) -> None:
        self.owner = event.owner


def upgrade_linear(url: str, revision: str) -> None:
    """What `create_schema()` did before the split, up to `revision`."""
    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(LINEAR_HISTORY))
    with write_connection(engine) as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        if connection.in_transaction():
            connection.commit()
    engine.dispose()


def migrations_run(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The revisions Alembic ran, from its log."""
    return [
        r.getMessage().split("-> ")[1].split(",")[0]
        for r in caplog.records
        if r.name == "alembic.runtime.migration" and "Running upgrade" in r.getMessage()
    ]


@pytest.mark.parametrize(
    ("linear", "created"),
    [
        # 0001 made the store's tables, 0002 and 0003 the runtime's.
        ("0001", ["runtime_0001", "runtime_0002"]),
        ("0002", ["runtime_0002"]),
        ("0003", []),
    ],
)
def test_a_database_of_the_linear_history_upgrades_without_recreating_anything(
    backend: str,
    database_url_factory: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
    linear: str,
    created: list[str],
) -> None:
    url = database_url_factory(backend)
    upgrade_linear(url, linear)
    with EventStore(url, context="lh") as store:
        Repository(store, LhAccount).save(LhAccount.open("a1", "ada"))
        if linear == "0003":
            with store.engine.begin() as conn:
                conn.execute(
                    sa.text(
                        "INSERT INTO projections (name, kind, version, status, updated_at)"
                        " VALUES ('lh.view', 'projection', 1, 'running', :now)"
                    ),
                    {"now": datetime.now(UTC)},
                )

    with caplog.at_level(logging.INFO, logger="alembic.runtime.migration"):
        upgrade_schema(url)
    # Of the revisions the linear history had, only those it had not run yet
    # run; the ones added since run as they would on any database.
    assert [r for r in migrations_run(caplog) if r in LINEAR_ERA] == created
    assert stamped(url) == current_heads()

    with EventStore(url, context="lh") as store:
        account = Repository(store, LhAccount).get("a1")
        assert (account.owner, account.version) == ("ada", 1)
        # The store's triggers are the old ones, still in force.
        with (
            pytest.raises(sa.exc.DBAPIError, match="events are immutable"),
            store.engine.begin() as conn,
        ):
            conn.execute(sa.text("DELETE FROM events"))
        with store.engine.connect() as conn:
            names = conn.execute(sa.text("SELECT name FROM projections")).scalars().all()
        assert names == (["lh.view"] if linear == "0003" else [])
        assert set(sa.inspect(store.engine).get_table_names()) >= STORE_TABLES | RUNTIME_TABLES


def test_upgrading_only_the_store_restamps_a_linear_database_whole(
    backend: str, database_url_factory: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    url = database_url_factory(backend)
    upgrade_linear(url, "0003")
    with caplog.at_level(logging.INFO, logger="alembic.runtime.migration"):
        with EventStore(url, context="lh") as store:
            store.create_schema("store")
        upgrade_schema(url, "runtime")
    assert [r for r in migrations_run(caplog) if r in LINEAR_ERA] == []
    assert stamped(url) == current_heads()
