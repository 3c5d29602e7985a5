"""`eventsource db`: the framework's tables."""

from __future__ import annotations

import click

from eventsource.cli.common import announce, describe_url, require_database, settings_from
from eventsource.store.engine import create_engine
from eventsource.store.migrate import BRANCHES, Branch, upgrade_schema


@click.group()
def db() -> None:
    """The framework's tables."""


@db.command("upgrade")
@click.option("--url", help="Database URL (default: EVENTSOURCE_DATABASE_URL).")
@click.option(
    "--branch",
    type=click.Choice(BRANCHES),
    help="Only the event store's tables (store) or only the projection runtime's (runtime).",
)
def db_upgrade(url: str | None, branch: Branch | None) -> None:
    """Create or upgrade the framework's tables to the latest migration."""
    settings = settings_from(url)
    require_database(settings, what="`db upgrade`")
    announce(settings)
    engine = create_engine(settings.database_url)
    try:
        upgrade_schema(engine, *([branch] if branch else BRANCHES))
    finally:
        engine.dispose()
    what = f"{branch} schema" if branch else "schema"
    click.echo(f"{describe_url(settings.database_url)}: {what} is up to date")
