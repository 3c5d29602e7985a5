"""`eventsource relay`: publish a store's events to Kafka."""

from __future__ import annotations

import click

from eventsource.cli.common import (
    announce,
    interpreter_tuning,
    require_database,
    settings_from,
    stop_on_signals,
)
from eventsource.console import ProgressReport
from eventsource.errors import ConfigurationError
from eventsource.store.eventstore import EventStore

ONCE_TIMEOUT = 60.0


@click.group()
def relay() -> None:
    """Publish a store's events to Kafka."""


@relay.command("run")
@click.option("--url", help="The store's database URL (default: EVENTSOURCE_DATABASE_URL).")
@click.option("--context", help="The store's bounded context (default: EVENTSOURCE_CONTEXT).")
@click.option(
    "--batch-size",
    default=5000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Events per Kafka transaction.",
)
@click.option("--once", is_flag=True, help="Stop when everything stored so far is on Kafka.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    help=f"Give up when the store or Kafka is unreachable this long (--once: {ONCE_TIMEOUT:.0f} s;"
    " otherwise wait for ever).",
)
def relay_run(
    url: str | None, context: str | None, batch_size: int, once: bool, timeout: float | None
) -> None:
    """Relay events from the store to Kafka, exactly once, until stopped."""
    from eventsource.bus.config import KafkaConfig
    from eventsource.bus.relay import Relay, RelayProgress

    settings = settings_from(url, context)
    if "database_url" not in settings.model_fields_set:
        raise ConfigurationError(
            "the relay needs the store's database: set EVENTSOURCE_DATABASE_URL or pass --url"
            " (it never runs on the embedded default)"
        )
    require_database(settings, what="the relay")
    kafka = KafkaConfig.from_settings(settings)
    announce(settings)
    with (
        stop_on_signals() as stop,
        EventStore(settings.database_url, context=settings.context) as store,
        Relay(
            store,
            kafka,
            batch_size=batch_size,
            stop=stop,
            timeout=timeout if timeout is not None else (ONCE_TIMEOUT if once else None),
        ) as relayer,
        interpreter_tuning(settings) as tuning,
    ):
        start = relayer.start()
        head = relayer.retry.call(store.head_position)
        with ProgressReport(f"relay {store.context}", total=head - start) as report:

            def show(progress: RelayProgress) -> None:
                report.update(
                    progress.relayed, total=progress.relayed + progress.lag, lag=progress.lag
                )
                if tuning is not None:
                    tuning.batch_done()

            relayer.run(stop=stop, until_caught_up=once, progress=show)
    click.echo(
        f"relayed {relayer.relayed} events; Kafka holds the store up to position {relayer.position}"
    )
