"""`eventsource events`: look at the events on the log."""

from __future__ import annotations

import importlib

import click

from eventsource.cli.common import existing_engine, settings_from, stop_on_signals
from eventsource.errors import ConfigurationError


@click.group()
def events() -> None:
    """Look at the events on the log."""


def import_modules(modules: tuple[str, ...]) -> None:
    """Import modules that define event classes, so their types can be decoded."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigurationError(
                f"--import {module}: {exc} (modules are found from the current folder and"
                " --app-dir)"
            ) from exc


@events.command("tail")
@click.option("--topic", "topics", multiple=True, help="Topic to read (repeatable; default: all).")
@click.option("--from-beginning", is_flag=True, help="Start at offset zero instead of the end.")
@click.option("--url", help="Embedded mode: the store's database URL.")
@click.option("--context", help="Embedded mode: the store's bounded context.")
@click.option(
    "--import", "modules", multiple=True, help="Module defining event classes to validate with."
)
@click.option(
    "--max-events", type=click.IntRange(min=1), default=None, help="Stop after this many events."
)
@click.option(
    "--idle-exit",
    type=click.FloatRange(min=0),
    default=None,
    help="Stop after this many idle seconds.",
)
def events_tail(
    topics: tuple[str, ...],
    from_beginning: bool,
    url: str | None,
    context: str | None,
    modules: tuple[str, ...],
    max_events: int | None,
    idle_exit: float | None,
) -> None:
    """Print events as they arrive: position, topic, type, aggregate and payload."""
    from eventsource.bus.tail import follow

    import_modules(modules)
    settings = settings_from(url, context)
    if settings.embedded:
        # A read-only command: every store it reads must exist already.
        for store_url in settings.store_urls().values():
            existing_engine(
                settings.model_copy(update={"database_url": store_url}), needs="events"
            ).dispose()
    with stop_on_signals() as stop:
        for line in follow(
            settings,
            topics=list(topics),
            from_beginning=from_beginning,
            validate=bool(modules),
            stop=stop,
            max_events=max_events,
            idle_exit=idle_exit,
        ):
            click.echo(line)
