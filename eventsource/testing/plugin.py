"""The pytest plugin that installing eventsource registers (entry point `eventsource`).

Fixtures:

* `event_store` — a migrated, throwaway store of context `test`.
* `event_store_factory(**overrides)` — more of them; keyword arguments go
  to `EventStore` (`context="orders"`, `url=...`), `migrate=False` skips
  the schema.

Both use SQLite files in the test's `tmp_path`, or a database of their own
on the PostgreSQL server named by `--eventsource-database-url` or
`EVENTSOURCE_TEST_DATABASE_URL` (its user must be allowed to create
databases). Disable the plugin with `-p no:eventsource`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eventsource.store.eventstore import EventStore
from eventsource.testing.stores import ThrowawayStores

# Plain asserts in the shipped contract tests explain themselves when they fail.
pytest.register_assert_rewrite("eventsource.testing.contracts")

OPTION = "--eventsource-database-url"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("eventsource")
    group.addoption(
        OPTION,
        dest="eventsource_database_url",
        default=None,
        metavar="URL",
        help="PostgreSQL server for the event_store fixtures (default:"
        " $EVENTSOURCE_TEST_DATABASE_URL, else SQLite files)",
    )


@pytest.fixture
def event_store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., EventStore]]:
    """`event_store_factory(**overrides)`: throwaway stores, removed after the test."""
    url = request.config.getoption("eventsource_database_url")
    if url:
        stores = ThrowawayStores(tmp_path, database_url=url)
    else:
        stores = ThrowawayStores.from_environment(tmp_path)
    yield stores.make
    stores.close()


@pytest.fixture
def event_store(event_store_factory: Callable[..., EventStore]) -> EventStore:
    """A migrated, throwaway event store of context `test`."""
    return event_store_factory()
