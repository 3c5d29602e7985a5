"""`eventsource relay`: publish a store's events to Kafka."""

from __future__ import annotations

from typing import Any

import click

from eventsource.cli.common import (
    announce,
    existing_engine,
    interpreter_tuning,
    metrics_options,
    observability,
    require_database,
    settings_from,
    stop_on_signals,
)
from eventsource.console import ProgressReport
from eventsource.errors import ConfigurationError, StoreMismatch
from eventsource.identity import Identity
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
@metrics_options
def relay_run(
    url: str | None,
    context: str | None,
    batch_size: int,
    once: bool,
    timeout: float | None,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Relay events from the store to Kafka, exactly once, until stopped."""
    from prometheus_client import CollectorRegistry

    from eventsource.bus.config import KafkaConfig
    from eventsource.bus.relay import Relay, RelayProgress
    from eventsource.observability.metrics import RelayMetrics

    metrics = RelayMetrics(CollectorRegistry())
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
            identity=Identity.of_this_process(settings.worker_name),
            heartbeat_seconds=settings.heartbeat_seconds,
            metrics=metrics,
        ) as relayer,
        interpreter_tuning(settings) as tuning,
        observability(
            metrics_port,
            metrics_host,
            metrics.registry,
            lambda: relay_health(relayer, max(60.0, 6 * settings.heartbeat_seconds)),
        ),
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


@relay.command("status")
@click.option("--url", help="The store's database URL (default: EVENTSOURCE_DATABASE_URL).")
@click.option("--context", help="The store's bounded context (default: EVENTSOURCE_CONTEXT).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def relay_status_command(url: str | None, context: str | None, as_json: bool) -> None:
    """The store's head, what Kafka holds of it, the backlog and the relays."""
    from eventsource.bus.config import KafkaConfig
    from eventsource.bus.relay import Relay
    from eventsource.bus.relay_status import relay_status
    from eventsource.console import print_json, print_table

    settings = settings_from(url, context)
    existing_engine(settings, needs="events").dispose()
    kafka = KafkaConfig.from_settings(settings)
    with (
        EventStore(settings.database_url, context=settings.context) as store,
        Relay(store, kafka, timeout=ONCE_TIMEOUT) as relayer,
    ):
        report = relay_status(
            store, relayer.retry.call(relayer.tails), heartbeat_seconds=settings.heartbeat_seconds
        )
    if as_json:
        print_json(report.as_dict())
        return
    click.echo(
        f"relay of {report.context} (store {report.store_id}): {report.status};"
        f" store head {report.head}, on Kafka up to {report.on_kafka},"
        f" backlog {report.backlog:,} events"
    )
    if report.retrying:
        click.echo(f"  {report.retrying}")
    if report.foreign_stores:
        click.echo(f"  the topics were written by other stores: {', '.join(report.foreign_stores)}")
    if report.relays:
        print_table(
            "relays",
            ["relay", "host", "pid", "position", "relayed", "heartbeat"],
            [
                (
                    r.name,
                    r.host,
                    r.pid,
                    r.position,
                    r.relayed,
                    r.heartbeat_at.isoformat(timespec="seconds") + ("" if r.fresh else " (stale)"),
                )
                for r in report.relays
            ],
        )


@relay.command("adopt")
@click.option("--url", help="The new store's database URL (default: EVENTSOURCE_DATABASE_URL).")
@click.option("--context", help="The store's bounded context (default: EVENTSOURCE_CONTEXT).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def relay_adopt(url: str | None, context: str | None, yes: bool) -> None:
    """Make this store the one that writes the context's topics (a deliberate move
    to a new database that holds every event already on Kafka)."""
    from eventsource.bus.config import KafkaConfig
    from eventsource.bus.relay import Relay

    settings = settings_from(url, context)
    existing_engine(settings, needs="events").dispose()
    kafka = KafkaConfig.from_settings(settings)
    with (
        EventStore(settings.database_url, context=settings.context) as store,
        Relay(store, kafka, timeout=ONCE_TIMEOUT) as relayer,
    ):
        try:
            relayer.check_store()
        except StoreMismatch as mismatch:
            if mismatch.kafka_position > mismatch.head:
                raise  # it lacks events that are on Kafka: not the same history
            [previous] = sorted(mismatch.found - {mismatch.store_id})
            if not yes:
                click.confirm(
                    f"Make {store!r} the store of {store.context}'s topics, in place of store"
                    f" {previous}?",
                    abort=True,
                )
            store.adopt_identity(previous)
            click.echo(f"{store.context}: this store now carries the identity {previous}")
            return
    click.echo(f"{store.context}: the topics are this store's already; nothing to adopt")


def relay_health(relayer: Any, window: float) -> Any:
    """Live while the relay's loop goes round; ready while it is not retrying."""
    import time

    from eventsource.observability.server import Health

    outage = relayer.retry.outage.describe()
    # Starting, or waiting out an outage, is alive: the loop wakes up to retry.
    looping = time.monotonic() - relayer.last_loop < window or outage is not None
    return Health(
        live=looping,
        ready=looping and outage is None,
        detail={"position": relayer.position, "relayed": relayer.relayed, "retrying": outage},
    )
