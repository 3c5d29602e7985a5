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
from contextlib import ExitStack, contextmanager

import click

from eventsource import __version__
from eventsource.console import ProgressReport
from eventsource.errors import EventSourceError
from eventsource.settings import Settings
from eventsource.store.engine import create_engine
from eventsource.store.eventstore import EventStore, upgrade_schema
from eventsource.tuning import InterpreterTuning

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


@contextmanager
def interpreter_tuning(settings: Settings) -> Iterator[InterpreterTuning | None]:
    """The interpreter tuning of `EVENTSOURCE_TUNE_INTERPRETER`, if it is on."""
    if not settings.tune_interpreter:
        yield None
        return
    with InterpreterTuning() as tuning:
        yield tuning


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
        interpreter_tuning(settings) as tuning,
    ):
        start = relayer.start()
        head = store.head_position()
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


# -- projection ----------------------------------------------------------------------


@cli.group()
def projection() -> None:
    """Run, inspect and rebuild projections and reactors (named package.module:Class)."""


def _context_options(command: click.decorators.FC) -> click.decorators.FC:
    command = click.option("--url", help="The context's database URL (views, positions).")(command)
    return click.option("--context", help="The bounded context (default: EVENTSOURCE_CONTEXT).")(
        command
    )


@projection.command("run")
@click.argument("names", nargs=-1, required=True)
@_context_options
@click.option("--batch-size", default=1000, show_default=True, help="Events per transaction.")
@click.option("--until-caught-up", is_flag=True, help="Stop once the end of the log is applied.")
def projection_run(
    names: tuple[str, ...],
    url: str | None,
    context: str | None,
    batch_size: int,
    until_caught_up: bool,
) -> None:
    """Run projections and reactors until SIGTERM (each finishes its batch)."""
    from eventsource.projections.runner import Runtime, load_class, run_workers
    from eventsource.projections.worker import BatchStats, Worker

    classes = [load_class(name) for name in names]
    settings = settings_from(url, context)
    with (
        Runtime(settings) as runtime,
        stop_on_signals() as stop,
        ExitStack() as stack,
    ):
        workers = [runtime.worker(cls, batch_size=batch_size) for cls in classes]
        reports = {
            w.name: stack.enter_context(ProgressReport(f"{w.kind} {w.name}")) for w in workers
        }
        tuning = stack.enter_context(interpreter_tuning(settings))

        def show(worker: Worker, stats: BatchStats) -> None:
            if stats.messages:
                reports[worker.name].update(worker.applied)
                if tuning is not None:
                    tuning.batch_done()

        run_workers(workers, stop=stop, until_caught_up=until_caught_up, on_batch=show)


@projection.command("status")
@click.argument("names", nargs=-1, required=True)
@_context_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def projection_status(
    names: tuple[str, ...], url: str | None, context: str | None, as_json: bool
) -> None:
    """Positions, end of log, lag per partition and the last error."""
    from eventsource.console import print_json, print_table
    from eventsource.projections.runner import Runtime, load_class
    from eventsource.projections.status import status

    results = []
    with Runtime(settings_from(url, context)) as runtime:
        for name in names:
            cls = load_class(name)
            results.append(status(cls, runtime.store().engine, runtime.log(cls.name)))
    if as_json:
        print_json([r.as_dict() for r in results])
        return
    for r in results:
        version = f"v{r.version}" if r.version is not None else "-"
        stale = (
            "" if r.version in (None, r.code_version) else f" (code: v{r.code_version}: rebuild)"
        )
        parked = f", {r.parked} parked event(s)" if r.parked else ""
        click.echo(f"{r.kind} {r.name} {version}{stale}: {r.status}, lag {r.lag:,}{parked}")
        if r.last_error:
            click.echo(f"  last error ({r.last_error_at}): {r.last_error}")
        print_table(
            r.name,
            ["topic", "partition", "offset", "end", "lag", "last position"],
            [(p.topic, p.partition, p.offset, p.end, p.lag, p.last_position) for p in r.partitions],
        )


@projection.command("reset")
@click.argument("name")
@_context_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def projection_reset(name: str, url: str | None, context: str | None, yes: bool) -> None:
    """Empty a projection's views and positions (readers see it empty: prefer rebuild)."""
    from eventsource.projections.runner import Runtime, load_class
    from eventsource.projections.status import reset

    cls = load_class(name)
    if not yes:
        click.confirm(f"Empty the views of {cls.name} and start it from offset zero?", abort=True)
    with Runtime(settings_from(url, context)) as runtime:
        reset(cls, runtime.store().engine)
    click.echo(f"{cls.name}: views emptied; the next run starts from offset zero")


@projection.command("rebuild")
@click.argument("name")
@_context_options
@click.option("--batch-size", default=5000, show_default=True, help="Events per transaction.")
@click.option("--restart", is_flag=True, help="Start over instead of resuming a killed rebuild.")
def projection_rebuild(
    name: str, url: str | None, context: str | None, batch_size: int, restart: bool
) -> None:
    """Rebuild from offset zero beside the live view, then swap it in atomically."""
    from eventsource.projections.rebuild import RebuildProgress, rebuild
    from eventsource.projections.runner import Runtime, load_class

    cls = load_class(name)
    settings = settings_from(url, context)
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
@_context_options
def projection_replay(name: str, url: str | None, context: str | None) -> None:
    """Apply parked (dead-lettered) events again, once their handler is fixed."""
    from eventsource.projections.runner import Runtime, load_class

    cls = load_class(name)
    with Runtime(settings_from(url, context)) as runtime:
        worker = runtime.worker(cls)
        replayed, left = worker.replay_parked()
    click.echo(f"{cls.name}: replayed {replayed} parked event(s); {left} still parked")
    if left:
        sys.exit(1)


@projection.command("deadletters")
@click.argument("name")
@_context_options
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def projection_deadletters(
    name: str, url: str | None, context: str | None, limit: int, as_json: bool
) -> None:
    """List a projection's dead letters, newest first."""
    from eventsource.console import print_json, print_table
    from eventsource.projections import deadletters
    from eventsource.projections.runner import Runtime, load_class
    from eventsource.store.engine import read_transaction

    cls = load_class(name)
    with Runtime(settings_from(url, context)) as runtime:
        engine = runtime.store().engine
        upgrade_schema(engine)
        with read_transaction(engine) as conn:
            letters = deadletters.listing(conn, cls.name, limit=limit)
    if as_json:
        print_json([letter.as_dict() for letter in letters])
        return
    print_table(
        f"dead letters of {cls.name}",
        ["id", "status", "where", "stream", "type", "error"],
        [
            (
                d.id,
                d.status,
                f"{d.topic}[{d.partition}]@{d.offset}",
                d.stream_id,
                d.event_type,
                d.error[:80],
            )
            for d in letters
        ],
    )


@projection.command("wait")
@click.argument("name")
@click.option("--position", type=int, required=True, help="Global position of the store.")
@_context_options
@click.option("--store-context", help="Context of the store the position belongs to.")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds.")
def projection_wait(
    name: str,
    position: int,
    url: str | None,
    context: str | None,
    store_context: str | None,
    timeout: float,
) -> None:
    """Wait until a projection has applied a store's events up to a position."""
    from eventsource.projections.runner import Runtime, load_class
    from eventsource.projections.wait import wait_for

    cls = load_class(name)
    settings = settings_from(url, context)
    with Runtime(settings) as runtime:
        wait_for(
            cls,
            position,
            store=runtime.store(store_context),
            views=runtime.store().engine,
            partitions=1 if settings.embedded else settings.topic_partitions,
            timeout=timeout,
        )
    click.echo(f"{cls.name} has applied position {position}")


def main() -> None:
    """Entry point of the console script."""
    try:
        cli(standalone_mode=True)
    except EventSourceError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
