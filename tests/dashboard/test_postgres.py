"""The dashboard on a PostgreSQL store: no password shown, no write possible."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from eventsource import EventStore, Repository, Settings
from eventsource.dashboard import Sampler, Sources, gather
from eventsource.dashboard.sources import watched
from eventsource.store.engine import create_engine
from sample_app.orders.domain import Order

pytestmark = pytest.mark.postgres


def test_postgres_store_is_read_without_password_and_without_writes(database_url_factory) -> None:
    url = database_url_factory("postgres")
    password = make_url(url).password
    assert password
    with EventStore(url, context="orders") as store:
        store.create_schema()
        orders = Repository(store, Order)
        orders.save(*[Order.place(f"o-{n}", "c-1", Decimal(n)) for n in range(1, 6)])
    settings = Settings(database_url=url, context="orders", kafka_bootstrap_servers=None)
    sources = Sources(
        settings,
        [watched("sample_app.orders.views:OrderSummary", "orders")],
        {"orders": create_engine(url)},
    )
    with Sampler(sources) as sampler:
        snapshot = sampler.sample()
        raw, age = sampler.latest()
        assert age is not None
        assert age < 5
        with (
            pytest.raises(DBAPIError, match="read-only transaction"),
            sources.stores["orders"].engine.begin() as conn,
        ):
            conn.execute(text("DELETE FROM projection_positions"))
    assert f":{password}@".encode() not in raw  # (the test server's user has the same name)
    [context] = snapshot["contexts"]
    assert context["database"] == make_url(url).render_as_string(hide_password=True)
    assert "***" in context["database"]
    [summary] = snapshot["consumers"]
    assert (summary["status"], summary["lag_events"]) == ("never run", 5)
    assert orjson.loads(raw)["consumers"][0]["lag_events"] == 5


def test_an_error_that_quotes_the_password_shows_it_blanked(
    database_url_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = database_url_factory("postgres")
    password = make_url(url).password
    with EventStore(url, context="orders") as store:
        store.create_schema()
    settings = Settings(database_url=url, context="orders", kafka_bootstrap_servers=None)
    sources = Sources(settings, [], {"orders": create_engine(url)})

    def unreachable(*_args: object, **_kwargs: object) -> None:
        # As a driver might word it, with the whole connection string.
        raise OSError(f"could not connect with {url}: connection refused")

    monkeypatch.setattr(gather, "recent_events", unreachable)
    with Sampler(sources) as sampler:
        snapshot = sampler.sample()
        raw, _ = sampler.latest()
    assert snapshot["events"] == []
    assert "could not connect with" in snapshot["error"]
    assert f":{password}@" not in snapshot["error"]
    assert ":***@" in snapshot["error"]
    assert f":{password}@".encode() not in raw
