"""`eventsource projection`: run, inspect and rebuild projections and reactors."""

from __future__ import annotations

import sys
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
from eventsource.errors import ConfigurationError
from eventsource.projections.base import Consumer
from eventsource.projections.runner import load_class
from eventsource.projections.status import ConsumerStatus
from eventsource.projections.worker import PROJECTION_BATCH, REACTOR_BATCH

BATCH = click.IntRange(min=1)


@click.group()
def projection() -> None:
    """Run, inspect and rebuild projections and reactors (named package.module:Class)."""


@projection.command("run")
@click.argument("names", nargs=-1, required=True)
@context_options
@click.option(
    "--batch-size",
    type=BATCH,
    help=(
        f"Events per transaction at most (default: {PROJECTION_BATCH} for a projection,"
        f" {REACTOR_BATCH} for a reactor); within it, a batch is about a quarter of a"
        " second of work."
    ),
)
@click.option("--until-caught-up", is_flag=True, help="Stop once the end of the log is applied.")
@metrics_options
def projection_run(
    names: tuple[str, ...],
    context: str | None,
    url: str | None,
    stores: str | None,
    batch_size: int | None,
    until_caught_up: bool,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Run projections and reactors until SIGTERM (each finishes its batch)."""
    from prometheus_client import CollectorRegistry

    from eventsource.observability.metrics import WorkerMetrics
    from eventsource.projections.batch import BatchStats
    from eventsource.projections.runner import Runtime, run_workers
    from eventsource.projections.worker import Worker

    classes = [load_class(name) for name in names]
    settings = settings_from(url, context, stores)
    require_database(settings, what="`projection run`")
    settings.store_urls()  # a context given two databases is refused before anything runs
    announce(settings)
    with (
        Runtime(settings) as runtime,
        stop_on_signals() as stop,
        ExitStack() as stack,
    ):
        metrics = WorkerMetrics(CollectorRegistry())
        workers = [runtime.worker(cls, batch_size=batch_size, metrics=metrics) for cls in classes]
        reports = {
            w.name: stack.enter_context(ProgressReport(f"{w.kind} {w.name}")) for w in workers
        }
        tuning = stack.enter_context(interpreter_tuning(settings))
        window = max(60.0, 6 * settings.heartbeat_seconds)
        stack.enter_context(
            observability(
                metrics_port,
                metrics_host,
                metrics.registry,
                lambda: workers_health(workers, window),
            )
        )

        def show(worker: Worker, stats: BatchStats) -> None:
            if stats.messages:
                reports[worker.name].update(worker.applied)
                if tuning is not None:
                    tuning.batch_done()

        try:
            run_workers(workers, stop=stop, until_caught_up=until_caught_up, on_batch=show)
        finally:
            for worker in workers:  # the last batch committed after its report
                reports[worker.name].update(worker.applied)


@projection.command("status")
@click.argument("names", nargs=-1, required=True)
@context_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def projection_status(
    names: tuple[str, ...], context: str | None, url: str | None, stores: str | None, as_json: bool
) -> None:
    """State, positions, end of log, lag per partition and the last error."""
    from eventsource.console import print_json
    from eventsource.projections.runner import Runtime
    from eventsource.projections.status import status

    classes = [load_class(name) for name in names]
    settings = settings_from(url, context, stores)
    engine = existing_engine(settings)
    results = []
    try:
        with Runtime(settings, read_only=True) as runtime:
            sources = {ctx: runtime.store(ctx) for ctx in settings.store_urls()}
            for cls in classes:
                log = runtime.log(f"{cls.name}.status")
                results.append(
                    status(
                        cls,
                        engine,
                        log,
                        stores=sources,
                        heartbeat_seconds=settings.heartbeat_seconds,
                    )
                )
    finally:
        engine.dispose()
    if as_json:
        print_json([r.as_dict() for r in results])
        return
    for r in results:
        _show_status(r)


def _show_status(r: ConsumerStatus) -> None:
    from eventsource.console import print_table

    version = f" v{r.version}" if r.version is not None else ""
    stale = "" if r.version in (None, r.code_version) else f" (code: v{r.code_version}: rebuild)"
    state = r.status
    if r.status == "running":
        state += f" ({', '.join(r.live_members)})"
    elif r.unresponsive_since is not None:
        state += f" since {r.unresponsive_since.isoformat(timespec='seconds')}"
    lag = f"lag {r.lag_events:,} events" if r.lag_events is not None else f"lag {r.lag:,}"
    notes = f", {r.parked} parked event(s)" if r.parked else ""
    for kind in ("stopped", "skipped"):
        if r.dead_letters.get(kind):
            notes += f", {r.dead_letters[kind]} {kind} dead letter(s)"
    click.echo(f"{r.kind} {r.name}{version}{stale}: {state}, {lag}{notes}")
    if r.retrying:
        click.echo(f"  {r.retrying}")
    for topic in r.missing_topics:
        click.echo(f"  topic {topic} is missing: nothing relayed to it yet, or a misspelled name")
    if r.last_error:
        click.echo(f"  last error ({r.last_error_at}): {r.last_error}")
    if r.members:
        print_table(
            f"{r.name}: workers",
            ["worker", "host", "pid", "partitions", "applied", "heartbeat"],
            [
                (
                    m.name,
                    m.host,
                    m.pid,
                    " ".join(m.partitions),
                    m.applied,
                    m.heartbeat_at.isoformat(timespec="seconds")
                    + ("" if m.name in r.live_members else " (stale)"),
                )
                for m in r.members
            ],
        )
    print_table(
        r.name,
        ["topic", "partition", "offset", "end", "lag", "events behind", "last position"],
        [
            (p.topic, p.partition, p.offset, p.end, p.lag, p.lag_events, p.last_position)
            for p in r.partitions
        ],
    )


@projection.command("reset")
@click.argument("name")
@context_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def projection_reset(
    name: str, context: str | None, url: str | None, stores: str | None, yes: bool
) -> None:
    """Empty a projection's views and positions (readers see it empty: prefer rebuild)."""
    from eventsource.projections.status import reset

    cls = load_class(name)
    settings = settings_from(url, context, stores)
    engine = existing_engine(settings)
    try:
        if not yes:
            click.confirm(
                f"Empty the views of {cls.name} and start it from offset zero?", abort=True
            )
        reset(cls, engine)
    finally:
        engine.dispose()
    click.echo(f"{cls.name}: views emptied; the next run starts from offset zero")


@projection.command("rebuild")
@click.argument("name")
@context_options
@click.option(
    "--batch-size",
    default=PROJECTION_BATCH,
    show_default=True,
    type=BATCH,
    help="Events per transaction at most; within it, about a quarter of a second of work.",
)
@click.option("--restart", is_flag=True, help="Start over instead of resuming a killed rebuild.")
def projection_rebuild(
    name: str,
    context: str | None,
    url: str | None,
    stores: str | None,
    batch_size: int,
    restart: bool,
) -> None:
    """Rebuild from offset zero beside the live view, then swap it in atomically."""
    from eventsource.projections.rebuild import RebuildProgress, rebuild
    from eventsource.projections.runner import Runtime

    cls = load_class(name)
    settings = settings_from(url, context, stores)
    require_database(settings, what="`projection rebuild`")
    settings.store_urls()
    announce(settings)
    with (
        Runtime(settings) as runtime,
        stop_on_signals() as stop,
        ProgressReport(f"rebuild {cls.name}") as report,
        interpreter_tuning(settings) as tuning,
    ):

        def show(progress: RebuildProgress) -> None:
            report.update(progress.done, total=progress.total, lag=progress.lag)

        applied = rebuild(
            cls,
            runtime.log(f"{cls.name}.rebuild"),
            engine=runtime.store().engine,
            codec=runtime.store().codec,
            batch_size=batch_size,
            restart=restart,
            stop=stop,
            progress=show,
            on_batch=None if tuning is None else tuning.batch_done,
        )
    if stop.is_set():
        click.echo(f"{cls.name}: rebuild interrupted after {applied:,} events; run again to resume")
        sys.exit(1)
    click.echo(f"{cls.name}: rebuilt from offset zero ({applied:,} events) and swapped in")


@projection.command("replay")
@click.argument("name")
@context_options
def projection_replay(name: str, context: str | None, url: str | None, stores: str | None) -> None:
    """Apply dead-lettered events again (stopped and parked), once their handler is fixed.

    NAME is a projection, a reactor, or a transform on the embedded log.
    """
    from eventsource.projections.runner import Runtime

    cls = dead_letters_of(name, url, context, stores)
    settings = settings_from(url, context, stores)
    existing_engine(settings).dispose()
    with Runtime(settings) as runtime:
        worker = runtime.worker(cls)
        replayed, left = worker.replay_parked()
    click.echo(f"{cls.name}: replayed {replayed} parked event(s); {left} still parked")
    if left:
        sys.exit(1)


@projection.command("deadletters")
@click.argument("name")
@context_options
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def projection_deadletters(
    name: str,
    context: str | None,
    url: str | None,
    stores: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List a projection's dead letters, newest first.

    NAME is a projection, a reactor, or a transform on the embedded log.
    """
    from eventsource.console import print_json, print_table
    from eventsource.projections import deadletters
    from eventsource.store.engine import read_transaction

    cls = dead_letters_of(name, url, context, stores)
    engine = existing_engine(settings_from(url, context, stores), needs="dead_letters")
    try:
        with read_transaction(engine) as conn:
            letters = deadletters.listing(conn, cls.name, limit=limit)
    finally:
        engine.dispose()
    if as_json:
        print_json([letter.as_dict() for letter in letters])
        return
    print_table(
        f"dead letters of {cls.name}",
        ["id", "status", "where", "stream", "type", "error", "resolution"],
        [
            (
                d.id,
                d.status,
                f"{d.topic}[{d.partition}]@{d.offset}",
                d.stream_id,
                d.event_type,
                d.error[:80],
                f"{d.resolution} ({d.resolved_by}, {d.resolved_at:%Y-%m-%d %H:%M})"
                if d.resolution and d.resolved_at
                else "",
            )
            for d in letters
        ],
    )


@projection.command("skip")
@click.argument("name")
@click.option(
    "--id", "letter_id", type=click.IntRange(min=1), required=True, help="Dead letter id."
)
@click.option("--reason", required=True, help="Why it will never be applied (recorded).")
@click.option("--by", help="Who decided (default: the user running the command).")
@context_options
def projection_skip(
    name: str,
    letter_id: int,
    reason: str,
    by: str | None,
    context: str | None,
    url: str | None,
    stores: str | None,
) -> None:
    """Never apply a dead-lettered event: record why, and let its stream go on.

    NAME is a projection, a reactor, or a transform on the embedded log.
    """
    import getpass

    from eventsource.projections.runner import Runtime

    cls = dead_letters_of(name, url, context, stores)
    settings = settings_from(url, context, stores)
    existing_engine(settings, needs="dead_letters").dispose()
    with Runtime(settings) as runtime:
        done = runtime.worker(cls).skip(letter_id, reason=reason, by=by or getpass.getuser())
    click.echo(f"{cls.name}: {done}")


@projection.command("wait")
@click.argument("name")
@click.option(
    "--position",
    type=click.IntRange(min=0),
    required=True,
    help="Global position of the store (what `save` returned).",
)
@context_options
@click.option("--store-context", help="Context of the store the position belongs to.")
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(min=0))
def projection_wait(
    name: str,
    position: int,
    context: str | None,
    url: str | None,
    stores: str | None,
    store_context: str | None,
    timeout: float,
) -> None:
    """Wait until a projection has applied a store's events up to a position."""
    from eventsource.projections.runner import Runtime
    from eventsource.projections.wait import wait_for

    cls = load_class(name)
    settings = settings_from(url, context, stores)
    views = existing_engine(settings)
    try:
        with Runtime(settings, read_only=True) as runtime:
            wait_for(
                cls,
                position,
                store=runtime.store(store_context),
                views=views,
                kafka=runtime.kafka_config(),
                timeout=timeout,
            )
    finally:
        views.dispose()
    click.echo(f"{cls.name} has applied position {position}")


def dead_letters_of(
    name: str, url: str | None, context: str | None, stores: str | None
) -> type[Consumer]:
    """The consumer whose dead letters the command reads: a projection, a
    reactor, or a transform on the embedded log (it runs as a reactor there)."""
    cls = load_class(name, transforms=True)
    transform = getattr(cls, "transform", None)
    if transform is not None and settings_from(url, context, stores).kafka_bootstrap_servers:
        raise ConfigurationError(
            f"on Kafka, transform {transform.name!r} parks records on topic"
            f" {transform.dead_letters!r}, not in a database: read them there"
            " (its messages carry the error in headers)"
        )
    return cls


def workers_health(workers: list[Any], window: float) -> Any:
    """Live while every worker's loop goes round; ready while none waits for a
    database or broker."""
    import time

    from eventsource.observability.server import Health

    now = time.monotonic()
    detail: dict[str, Any] = {}
    live = ready = True
    for worker in workers:
        outage = worker.waiting_on()
        waiting = outage is not None
        # Waiting out an outage is alive: the loop wakes up to retry.
        looping = worker.running and (now - worker.last_loop < window or waiting)
        live = live and looping
        ready = ready and looping and not waiting
        detail[worker.name] = (
            "not running" if not looping else (outage.describe() if outage else None) or "running"
        )
    return Health(live=live, ready=ready, detail={"workers": detail})
