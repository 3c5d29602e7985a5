"""`eventsource transform`: run and inspect transforms (topic to topic, exactly once)."""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from typing import Any

import click

from eventsource.cli.common import (
    announce,
    context_options,
    existing_engine,
    interpreter_tuning,
    metrics_options,
    observability,
    require_database,
    settings_from,
    stop_on_signals,
)
from eventsource.console import ProgressReport
from eventsource.settings import Settings

BATCH = click.IntRange(min=1)
log = logging.getLogger("eventsource.cli")


@click.group()
def transform() -> None:
    """Run and inspect transforms (named package.module:name, made by stream(...).to(...))."""


@transform.command("run")
@click.argument("name")
@context_options
@click.option(
    "--batch-size", default=1000, show_default=True, type=BATCH, help="Messages per transaction."
)
@click.option("--until-caught-up", is_flag=True, help="Stop once the inputs are read to the end.")
@metrics_options
def transform_run(
    name: str,
    context: str | None,
    url: str | None,
    stores: str | None,
    batch_size: int,
    until_caught_up: bool,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Run a transform until SIGTERM (which finishes the batch in hand).

    On Kafka it needs no database; each process of one transform needs its
    own EVENTSOURCE_WORKER_NAME. On the embedded log its output goes to the
    store of its context (EVENTSOURCE_DATABASE_URL).
    """
    from eventsource.streams.runtime import load_transform

    found = load_transform(name)
    settings = settings_from(url, context, stores)
    if settings.embedded:
        announce(settings)
        _run_embedded(found, settings, batch_size, until_caught_up, metrics_port, metrics_host)
    else:
        log.info(
            "transform %s, Kafka %s (no database)", found.name, settings.kafka_bootstrap_servers
        )
        _run_kafka(found, settings, batch_size, until_caught_up, metrics_port, metrics_host)


def _run_kafka(
    found: Any,
    settings: Settings,
    batch_size: int,
    until_caught_up: bool,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    from prometheus_client import CollectorRegistry

    from eventsource.streams.kafka import TransformBatch
    from eventsource.streams.metrics import TransformMetrics
    from eventsource.streams.runtime import kafka_runner

    metrics = TransformMetrics(CollectorRegistry())
    window = max(60.0, 6 * settings.heartbeat_seconds)
    with (
        stop_on_signals() as stop,
        kafka_runner(found, settings, batch_size=batch_size) as runner,
        interpreter_tuning(settings) as tuning,
        observability(
            metrics_port, metrics_host, metrics.registry, lambda: runner_health(runner, window)
        ),
        ProgressReport(f"transform {found.name}", unit="messages") as report,
    ):

        def show(batch: TransformBatch) -> None:
            metrics.batch(found.name, batch)
            report.update(runner.processed)
            if tuning is not None:
                tuning.batch_done()

        runner.run(stop=stop, until_caught_up=until_caught_up, on_batch=show)
    click.echo(
        f"transform {found.name}: {runner.processed} messages read, {runner.produced} records"
        f" written to {found.output}"
        + (f", {runner.parked} parked in {found.dead_letters}" if runner.parked else "")
    )


def _run_embedded(
    found: Any,
    settings: Settings,
    batch_size: int,
    until_caught_up: bool,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    from prometheus_client import CollectorRegistry

    from eventsource.cli.projection import workers_health
    from eventsource.observability.metrics import WorkerMetrics
    from eventsource.projections.batch import BatchStats
    from eventsource.projections.runner import Runtime, run_workers
    from eventsource.projections.worker import Worker
    from eventsource.streams.runtime import embedded_worker

    require_database(settings, what="`transform run` on the embedded log (its output's store)")
    settings.store_urls()  # a context given two databases is refused before anything runs
    metrics = WorkerMetrics(CollectorRegistry())
    with Runtime(settings) as runtime, stop_on_signals() as stop, ExitStack() as stack:
        worker = embedded_worker(found, runtime, batch_size=batch_size)
        worker.metrics = metrics
        report = stack.enter_context(ProgressReport(f"transform {found.name}"))
        window = max(60.0, 6 * settings.heartbeat_seconds)
        health = lambda: workers_health([worker], window)  # noqa: E731 - read at each probe
        stack.enter_context(observability(metrics_port, metrics_host, metrics.registry, health))

        def show(worker: Worker, stats: BatchStats) -> None:
            if stats.messages:
                report.update(worker.applied)

        run_workers([worker], stop=stop, until_caught_up=until_caught_up, on_batch=show)
        report.update(worker.applied)
    click.echo(f"transform {found.name}: {worker.applied} events read; output in {found.output}")


@transform.command("status")
@click.argument("names", nargs=-1, required=True)
@context_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def transform_status(
    names: tuple[str, ...], context: str | None, url: str | None, stores: str | None, as_json: bool
) -> None:
    """Members, committed offsets, end of each input and lag."""
    from eventsource.console import print_json
    from eventsource.streams.runtime import load_transform

    found = [load_transform(name) for name in names]
    settings = settings_from(url, context, stores)
    if settings.embedded:
        results = _embedded_status(found, settings)
        for result in results:
            result.kind = "transform"
        if as_json:
            print_json([r.as_dict() for r in results])
            return
        from eventsource.cli.projection import _show_status

        for result in results:
            _show_status(result)
        return
    from eventsource.bus.config import KafkaConfig
    from eventsource.streams.status import kafka_status

    kafka = KafkaConfig.from_settings(settings)
    statuses = [kafka_status(t, kafka) for t in found]
    if as_json:
        print_json([s.as_dict() for s in statuses])
        return
    for s in statuses:
        _show_kafka_status(s)


def _embedded_status(found: list[Any], settings: Settings) -> list[Any]:
    from eventsource.projections.runner import Runtime
    from eventsource.projections.status import status
    from eventsource.streams.embedded import reactor_for

    engine = existing_engine(settings)
    try:
        with Runtime(settings, read_only=True) as runtime:
            sources = {ctx: runtime.store(ctx) for ctx in settings.store_urls()}
            return [
                status(
                    reactor_for(t, settings.context),
                    engine,
                    runtime.log(f"{t.name}.status"),
                    stores=sources,
                    heartbeat_seconds=settings.heartbeat_seconds,
                )
                for t in found
            ]
    finally:
        engine.dispose()


def _show_kafka_status(s: Any) -> None:
    from eventsource.console import print_table

    members = f"{len(s.members)} member(s): {', '.join(s.members)}" if s.members else "no members"
    click.echo(
        f"transform {s.name} -> {s.output}: {s.status} (group {s.group}, {s.state}), {members},"
        f" lag {s.lag:,}"
    )
    for topic in s.missing_topics:
        click.echo(f"  topic {topic} is missing: nothing written to it yet, or a misspelled name")
    print_table(
        s.name,
        ["topic", "partition", "committed", "end", "lag", "last position"],
        [
            (
                p.topic,
                p.partition,
                "-" if p.committed is None else p.committed,
                p.end,
                p.lag,
                p.last_position,
            )
            for p in s.partitions
        ],
    )


def runner_health(runner: Any, window: float) -> Any:
    """Live while the runner's loop goes round; ready while it is not retrying."""
    from eventsource.observability.server import Health

    outage = runner.retry.outage.describe() or runner.log.outage.describe()
    looping = time.monotonic() - runner.last_loop < window or outage is not None
    return Health(
        live=looping,
        ready=looping and outage is None,
        detail={"processed": runner.processed, "produced": runner.produced, "retrying": outage},
    )
