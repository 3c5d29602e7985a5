"""Throwaway event stores for tests: SQLite files, or PostgreSQL databases made and dropped."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

from eventsource.store.eventstore import EventStore

DATABASE_URL_VARIABLE = "EVENTSOURCE_TEST_DATABASE_URL"


class ThrowawayStores:
    """Makes migrated event stores for one test and removes them afterwards.

    ::

        stores = ThrowawayStores(tmp_path)
        orders = stores.make(context="orders")
        ...
        stores.close()

    Each store gets a database of its own: a SQLite file in `folder`, or,
    with `database_url` (a PostgreSQL URL whose user may create databases),
    a database created on that server and dropped by `close()`. The
    application's own `EVENTSOURCE_DATABASE_URL` is never used.
    """

    def __init__(self, folder: Path, *, database_url: str | None = None) -> None:
        self.folder = folder
        self.database_url = database_url or None
        self._stores: list[EventStore] = []
        self._databases: list[str] = []
        self._admin: Engine | None = None

    @classmethod
    def from_environment(cls, folder: Path) -> ThrowawayStores:
        """With the PostgreSQL server of `EVENTSOURCE_TEST_DATABASE_URL`, if set."""
        return cls(folder, database_url=os.environ.get(DATABASE_URL_VARIABLE))

    @property
    def backend(self) -> str:
        """`"postgresql"` or `"sqlite"`: where `make` puts stores."""
        return "postgresql" if self.database_url else "sqlite"

    def make(self, *, migrate: bool = True, **overrides: Any) -> EventStore:
        """A new store with its schema created; keyword arguments go to `EventStore`.

        Defaults: `context="test"` and a fresh database (`url=` overrides it).
        """
        overrides.setdefault("context", "test")
        url = overrides.pop("url", None) or self.new_database_url()
        store = EventStore(url, **overrides)
        self._stores.append(store)
        if migrate:
            store.create_schema()
        return store

    def new_database_url(self) -> str:
        """The URL of a new, empty database."""
        name = f"es_test_{uuid.uuid4().hex[:12]}"
        if self.database_url is None:
            return f"sqlite:///{self.folder / name}.db"
        admin = self._admin_engine()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        self._databases.append(name)
        return admin.url.set(database=name).render_as_string(hide_password=False)

    def _admin_engine(self) -> Engine:
        if self._admin is None:
            assert self.database_url is not None
            url = make_url(self.database_url)
            if url.drivername in ("postgresql", "postgres"):
                url = url.set(drivername="postgresql+psycopg")
            self._admin = create_engine(url, isolation_level="AUTOCOMMIT")
        return self._admin

    def close(self) -> None:
        """Close every store made, and drop the PostgreSQL databases."""
        for store in self._stores:
            store.close()
        self._stores.clear()
        if self._admin is not None:
            with self._admin.connect() as conn:
                for name in self._databases:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            self._admin.dispose()
            self._admin = None
        self._databases.clear()
