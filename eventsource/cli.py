"""The `eventsource` command."""

from __future__ import annotations

import logging
import sys

import click

from eventsource import __version__
from eventsource.errors import EventSourceError
from eventsource.settings import Settings
from eventsource.store.engine import create_engine
from eventsource.store.eventstore import upgrade_schema


@click.group()
@click.version_option(__version__, prog_name="eventsource")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Event sourcing with SQL event stores and Kafka: the inside-out database."""
    level = logging.WARNING - 10 * min(verbose, 2) if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@cli.group()
def db() -> None:
    """The framework's tables."""


@db.command("upgrade")
@click.option("--url", envvar="EVENTSOURCE_DATABASE_URL", help="Database URL.")
def db_upgrade(url: str | None) -> None:
    """Create or upgrade the framework's tables to the latest migration."""
    engine = create_engine(url or Settings().database_url)
    try:
        upgrade_schema(engine)
    finally:
        engine.dispose()
    click.echo(f"{engine.url.render_as_string(hide_password=True)}: schema is up to date")


def main() -> None:
    """Entry point of the console script."""
    try:
        cli(standalone_mode=True)
    except EventSourceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
