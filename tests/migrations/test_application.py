"""An application's own Alembic revisions, upgraded beside eventsource's.

`application/` is such an application's Alembic environment, as
docs/migrations.md describes it: an ordinary one with its own version table,
run after `eventsource db upgrade`. Its revision makes a table of its own and
a view over eventsource's `events`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from eventsource import Aggregate, Event, Repository, on
from eventsource.store import EventStore, upgrade_schema
from tests.migrations.test_alembic_command import alembic
from tests.migrations.test_branches import (
    RUNTIME_TABLES,
    STORE_TABLES,
    VERSION_TABLE,
    current_heads,
    db_upgrade,
    stamped,
)

APPLICATION = Path(__file__).parent / "application"


class LoRegistered(Event):
    event_type = "lo.registered"


class LoCustomer(Aggregate, type_name="lo_customer"):
    @classmethod
    def register(cls, customer_id: str) -> LoCustomer:
        customer = cls(customer_id)
        customer.trigger(LoRegistered())
        return customer

    @on(LoRegistered)
    def _registered(self, event: LoRegistered) -> None:
        pass


def upgrade_application(url: str) -> None:
    done = alembic("-c", str(APPLICATION / "alembic.ini"), "-x", f"url={url}", "upgrade", "head")
    assert done.returncode == 0, done.stderr


def upgrade_in_code(url: str) -> None:
    """The same two steps from Python, one after the other."""
    upgrade_schema(url)
    config = Config(str(APPLICATION / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "head")


@pytest.mark.parametrize("how", ["commands", "code"])
def test_an_application_revision_runs_after_ours_with_its_own_history(
    backend: str, database_url_factory: Callable[..., str], how: str
) -> None:
    url = database_url_factory(backend)
    if how == "commands":
        db_upgrade(url)
        upgrade_application(url)
    else:
        upgrade_in_code(url)

    engine = sa.create_engine(url)
    inspector = sa.inspect(engine)
    assert set(inspector.get_table_names()) == STORE_TABLES | RUNTIME_TABLES | {
        VERSION_TABLE,
        "alembic_version",
        "loyalty_accounts",
    }
    assert "loyalty_customer_events" in inspector.get_view_names()
    assert stamped(url) == current_heads()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [
            "loyalty_0001"
        ]

    # The application's view reads what the store records.
    with EventStore(url, context="lo") as store:
        store.create_schema()
        Repository(store, LoCustomer).save(LoCustomer.register("c1"), LoCustomer.register("c2"))
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT customer_id, events FROM loyalty_customer_events"))
        assert sorted(tuple(r) for r in rows) == [("c1", 1), ("c2", 1)]
    engine.dispose()

    # Either history upgrades again with nothing to do (making a table twice would fail).
    upgrade_application(url)
    upgrade_schema(url)
    assert stamped(url) == current_heads()
