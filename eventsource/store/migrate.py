"""Migrating the framework's tables: the Alembic environment in `migrations/`, two branches."""

from __future__ import annotations

import importlib.util
import logging
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from eventsource.errors import ConfigurationError, StoreError
from eventsource.store.engine import (
    create_engine,
    write_connection,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

# The framework's Alembic branches: the event store's tables, and the projection
# runtime's (positions, projection state, dead letters, deadlines).
Branch = Literal["store", "runtime"]
BRANCHES: tuple[Branch, ...] = ("store", "runtime")

_migration_lock = threading.Lock()
_migrated: weakref.WeakKeyDictionary[Engine, set[Branch]] = weakref.WeakKeyDictionary()


def upgrade_schema(bind: str | URL | Engine, *branches: Branch) -> None:
    """Upgrade the framework's tables on `bind` to the latest revision (idempotent).

    `branches` picks the Alembic branches: `"store"` (events, snapshots),
    `"runtime"` (projection positions and state, dead letters, deadlines);
    none named means both, as `eventsource db upgrade` does.
    """
    wanted = set(branches or BRANCHES)
    if not wanted <= set(BRANCHES):
        raise ConfigurationError(f"unknown schema branches {sorted(wanted - set(BRANCHES))}")
    engine = create_engine(bind)
    try:
        _upgrade(engine, wanted)
    finally:
        if not isinstance(bind, Engine):
            engine.dispose()


def _upgrade(engine: Engine, wanted: set[Branch]) -> None:
    from alembic import command
    from alembic.config import Config

    with _migration_lock:
        done = _migrated.setdefault(engine, set())
        missing = wanted - done
        if not missing:
            return
        # One upgrade to every head at once, or each branch on its own.
        targets = ["heads"] if missing == set(BRANCHES) else [f"{b}@head" for b in sorted(missing)]
        config = Config()
        config.set_main_option("script_location", str(migrations_folder()))
        with write_connection(engine) as connection:
            config.attributes["connection"] = connection
            for target in targets:
                try:
                    command.upgrade(config, target)
                except DBAPIError as exc:
                    raise StoreError(f"migrating {engine.url!r} failed: {exc.orig}") from exc
                if connection.in_transaction():
                    connection.commit()
        done.update(missing)


def migrations_folder() -> Path:
    """The Alembic environment (`migrations/` in the repository, installed as
    `eventsource.migrations`)."""
    spec = importlib.util.find_spec("eventsource.migrations")
    if spec is None or not spec.submodule_search_locations:
        raise StoreError("the eventsource.migrations package is not installed")
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / "env.py").is_file():
        # A checkout updated from one that held the environment inside the
        # package keeps an `eventsource/migrations/__pycache__`, which Python
        # imports as an empty namespace package ahead of the mapped folder.
        raise StoreError(f"{folder} holds no Alembic environment: remove it (a leftover)")
    return folder
