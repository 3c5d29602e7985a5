"""The `eventsource` command.

Configuration comes from `EVENTSOURCE_*` variables (see `Settings`); options
given on the command line win.
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import click

from eventsource import __version__
from eventsource.console import ProgressReport
from eventsource.errors import EventSourceError
from eventsource.settings import Settings
from eventsource.store.engine import create_engine
from eventsource.store.eventstore import EventStore, upgrade_schema

log = logging.getLogger("eventsource.cli")


@click.group()
@click.version_option(__version__, prog_name="eventsource")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Event sourcing with SQL event stores and Kafka: the inside-out database."""
    level = logging.DEBUG if verbose > 1 else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if verbose < 2:
        logging.getLogger("alembic").setLevel(logging.WARNING)


def settings_from(url: str | None = None, context: str | None = None) -> Settings:
    overrides = {k: v for k, v in {"database_url": url, "context": context}.items() if v}
    return Settings(**overrides)  # type: ignore[arg-type]


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM or SIGINT: long loops finish their batch and return."""
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        log.info("received %s; finishing the current batch", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def import_modules(modules: tuple[str, ...]) -> None:
    """Import modules that define event classes, so their types can be decoded."""
    for module in modules:
        importlib.import_module(module)


# -- db ----------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """The framework's tables."""


@db.command("upgrade")
@click.option("--url", help="Database URL (default: EVENTSOURCE_DATABASE_URL).")
def db_upgrade(url: str | None) -> None:
    """Create or upgrade the framework's tables to the latest migration."""
    engine = create_engine(url or Settings().database_url)
    try:
        upgrade_schema(engine)
    finally:
        engine.dispose()
    click.echo(f"{engine.url.render_as_string(hide_password=True)}: schema is up to date")


# -- relay -------------------------------------------------------------------------


@cli.group()
def relay() -> None:
    """Publish a store's events to Kafka."""


@relay.command("run")
@click.option("--url", help="The store's database URL (default: EVENTSOURCE_DATABASE_URL).")
@click.option("--context", help="The store's bounded context (default: EVENTSOURCE_CONTEXT).")
@click.option("--batch-size", default=5000, show_default=True, help="Events per Kafka transaction.")
@click.option("--once", is_flag=True, help="Stop when everything stored so far is on Kafka.")
def relay_run(url: str | None, context: str | None, batch_size: int, once: bool) -> None:
    """Relay events from the store to Kafka, exactly once, until stopped."""
    from eventsource.bus.config import KafkaConfig
    from eventsource.bus.relay import Relay, RelayProgress

    settings = settings_from(url, context)
    kafka = KafkaConfig.from_settings(settings)
    with (
        EventStore(settings.database_url, context=settings.context) as store,
        Relay(store, kafka, batch_size=batch_size) as relayer,
        stop_on_signals() as stop,
    ):
        start = relayer.start()
        head = store.head_position()
        with ProgressReport(f"relay {store.context}", total=head - start) as report:

            def show(progress: RelayProgress) -> None:
                report.update(
                    progress.relayed, total=progress.relayed + progress.lag, lag=progress.lag
                )

            relayer.run(stop=stop, until_caught_up=once, progress=show)
    click.echo(
        f"relayed {relayer.relayed} events; Kafka holds the store up to position {relayer.position}"
    )


# -- events ------------------------------------------------------------------------


@cli.group()
def events() -> None:
    """Look at the events on the log."""


@events.command("tail")
@click.option("--topic", "topics", multiple=True, help="Topic to read (repeatable; default: all).")
@click.option("--from-beginning", is_flag=True, help="Start at offset zero instead of the end.")
@click.option("--url", help="Embedded mode: the store's database URL.")
@click.option("--context", help="Embedded mode: the store's bounded context.")
@click.option(
    "--import", "modules", multiple=True, help="Module defining event classes to validate with."
)
@click.option("--max-events", type=int, default=None, help="Stop after this many events.")
@click.option("--idle-exit", type=float, default=None, help="Stop after this many idle seconds.")
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


def main() -> None:
    """Entry point of the console script."""
    try:
        cli(standalone_mode=True)
    except EventSourceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
