"""eventsource's migrations as they were while their history was linear.

A frozen copy (this file and `versions/`): the tests make databases with
it and upgrade them with today's migrations. Never change it.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from eventsource.store.engine import create_engine, write_connection

VERSION_TABLE = "eventsource_alembic_version"


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
        context.run_migrations()


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        from eventsource.settings import Settings

        url = Settings().database_url
    engine = create_engine(url)
    try:
        with write_connection(engine) as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("eventsource migrations run online only")
run_online()
