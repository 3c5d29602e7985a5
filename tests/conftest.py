"""Shared fixtures: backend-parametrised stores, unique databases and topics.

Integration tests find the real services through EVENTSOURCE_DATABASE_URL
(a PostgreSQL URL whose user may create databases) and
EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS, which `scripts/services.sh env` prints.
The variables are read once here and removed from the environment, so that a
test's own `Settings()` starts from the defaults.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from eventsource.store import EventStore

# Kept under other names too: pytest-xdist's workers start after this module
# has run in the controller, and must find the services as well.
POSTGRES_URL = os.environ.pop("EVENTSOURCE_DATABASE_URL", "") or os.environ.get(
    "TEST_SERVICES_DATABASE_URL", ""
)
KAFKA_SERVERS = os.environ.pop("EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS", "") or os.environ.get(
    "TEST_SERVICES_KAFKA_BOOTSTRAP_SERVERS", ""
)
os.environ["TEST_SERVICES_DATABASE_URL"] = POSTGRES_URL
os.environ["TEST_SERVICES_KAFKA_BOOTSTRAP_SERVERS"] = KAFKA_SERVERS
# Where scripts/services.sh keeps the services (state directory, cluster name,
# ports): the tests that stop and start them must reach the same ones.
_SCRIPT_NAMES = ("EVENTSOURCE_SERVICES_DIR", "EVENTSOURCE_PG_CLUSTER")
SERVICES_SCRIPT_ENV: dict[str, str] = json.loads(
    os.environ.get("TEST_SERVICES_SCRIPT_ENV", "{}")
) or {
    name: value
    for name, value in os.environ.items()
    if name in _SCRIPT_NAMES or (name.startswith("EVENTSOURCE_") and name.endswith("_PORT"))
}
os.environ["TEST_SERVICES_SCRIPT_ENV"] = json.dumps(SERVICES_SCRIPT_ENV)
for _name in [n for n in os.environ if n.startswith("EVENTSOURCE_")]:
    os.environ.pop(_name)

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ["sqlite", "postgres"]


def unique(prefix: str) -> str:
    """A name no other test (or earlier run) uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def require_postgres() -> str:
    if not POSTGRES_URL:
        pytest.fail(
            "EVENTSOURCE_DATABASE_URL is not set: run `make test`, or `scripts/services.sh up`"
            ' and `eval "$(scripts/services.sh env)"`; deselect with -m "not postgres"'
        )
    return POSTGRES_URL


def require_kafka() -> str:
    if not KAFKA_SERVERS:
        pytest.fail(
            "EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS is not set: run `make test`, or"
            ' `scripts/services.sh up` and `eval "$(scripts/services.sh env)"`;'
            ' deselect with -m "not kafka"'
        )
    return KAFKA_SERVERS


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test parametrised with the postgres backend needs the server: mark it
    # so that `-m "not postgres"` deselects exactly those.
    # Likewise a test run on the Kafka + PostgreSQL setup (whichever fixture
    # carries it: `harness`, `rig`, `kind`) needs both servers.
    for item in items:
        callspec = getattr(item, "callspec", None)
        if not callspec:
            continue
        if "postgres" in str(callspec.params.get("backend", "")):
            item.add_marker(pytest.mark.postgres)
        if any("kafka-postgres" in str(value) for value in callspec.params.values()):
            item.add_marker(pytest.mark.kafka)
            item.add_marker(pytest.mark.postgres)


class PostgresDatabases:
    """Creates throwaway databases on the test server and drops them after."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = make_url(admin_url).set(drivername="postgresql+psycopg")
        self.engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        self.created: list[str] = []

    def create(self) -> str:
        name = unique("es_test")
        with self.engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return self.admin_url.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self.engine.connect() as conn:
            for name in self.created:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.engine.dispose()


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases(require_postgres())
    yield databases
    databases.drop_all()


@pytest.fixture
def database_url_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., str]:
    """`database_url_factory(backend)`: a fresh, empty database's URL."""

    def make(backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / unique('store')}.db"
        if backend == "postgres":
            databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
            return databases.create()
        raise ValueError(f"unknown backend {backend!r}")

    return make


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each test using it runs once per SQL backend."""
    return str(request.param)


@pytest.fixture
def database_url(backend: str, database_url_factory: Callable[..., str]) -> str:
    return database_url_factory(backend)


@pytest.fixture
def store_factory(
    backend: str, database_url_factory: Callable[..., str]
) -> Iterator[Callable[..., EventStore]]:
    """`store_factory(**overrides)`: a migrated store on the test's backend."""
    stores: list[EventStore] = []

    def make(**overrides: Any) -> EventStore:
        url = overrides.pop("url", None) or database_url_factory(backend)
        overrides.setdefault("context", "test")
        store = EventStore(url, **overrides)
        store.create_schema()
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def store(store_factory: Callable[..., EventStore]) -> EventStore:
    return store_factory()


@pytest.fixture(scope="session")
def kafka_servers() -> str:
    return require_kafka()


def services(command: str) -> None:
    """Run `scripts/services.sh <command>` (stop, kill or start a service) on the
    services the tests use."""
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "services.sh"), command],
        check=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **SERVICES_SCRIPT_ENV},
    )
