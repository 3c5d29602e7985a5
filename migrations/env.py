"""Alembic environment for eventsource's own tables.

Run by `EventStore.create_schema()`, by `eventsource db upgrade`, by the
projection workers, and by `alembic upgrade heads` from the repository root
(the URL from `-x url=...`, else `EVENTSOURCE_DATABASE_URL`). The revisions
form two independent branches: `store` (events, snapshots and their
triggers) and `runtime` (projection positions and state, dead letters,
deadlines). The version table is named `eventsource_alembic_version` so that
it never collides with an application's own Alembic history in the same
database.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, inspect, text

from eventsource.store.engine import create_engine, write_connection

VERSION_TABLE = "eventsource_alembic_version"

# Before the split into two branches the history was linear: 0001 made the
# store's tables, 0002 and 0003 the runtime's. Each of those revisions is
# one of the branches' under a new name, so a database stamped with one is
# stamped anew with what it holds, and nothing is created twice.
LINEAR_HISTORY = {
    "0001": ("store_0001",),
    "0002": ("store_0001", "runtime_0001"),
    "0003": ("store_0001", "runtime_0002"),
}


def _restamp_linear_history(connection: Connection) -> None:
    if not inspect(connection).has_table(VERSION_TABLE):
        return
    stamped = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(stamped) != 1 or stamped[0] not in LINEAR_HISTORY:
        return
    connection.execute(text(f"DELETE FROM {VERSION_TABLE}"))
    connection.execute(
        text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:revision)"),
        [{"revision": revision} for revision in LINEAR_HISTORY[stamped[0]]],
    )


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        version_table=VERSION_TABLE,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        # Two processes upgrading one fresh database at once: the second waits
        # here, then finds the work done (SQLite's BEGIN IMMEDIATE does the same).
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(6576656)"))
        _restamp_linear_history(connection)
        context.run_migrations()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url")
    url = url or context.config.get_main_option("sqlalchemy.url")
    if not url:
        from eventsource.settings import Settings

        url = Settings().database_url
    return url


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(_url())
    try:
        with write_connection(engine) as conn:
            _run(conn)
            if conn.in_transaction():
                conn.commit()
    finally:
        engine.dispose()


# The `alembic` command's own logging, from alembic.ini; eventsource's code
# configures Alembic without a file and leaves the host's logging alone.
if context.config.config_file_name is not None:
    fileConfig(context.config.config_file_name, disable_existing_loggers=False)
if context.is_offline_mode():
    raise SystemExit("eventsource migrations run online only")
run_online()
