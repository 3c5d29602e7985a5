"""`eventsource schema`: lock the shapes of an app's events and check changes against them.

`schema lock` records the JSON Schema of every event type and schema version
in a lock file that the app commits; `schema check` (for CI) fails when the
classes can no longer read a recorded shape; `schema check --database URL`
decodes a store's events in a read-only dry run before a deploy.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from eventsource.cli.common import describe_url, existing_engine, settings_from, stop_on_signals
from eventsource.cli.events import import_modules
from eventsource.errors import ConfigurationError, IncompatibleSchema
from eventsource.events.registry import default_registry
from eventsource.schema.dryrun import DryRun
from eventsource.schema.lock import LOCK_FILE, SchemaLock, app_types, read_lock

_modules_option = click.option(
    "--import",
    "modules",
    multiple=True,
    metavar="MODULE",
    help="A module that defines event classes (repeatable; default: the modules the lock names).",
)
_lock_option = click.option(
    "--lock",
    "lock_path",
    default=LOCK_FILE,
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The lock file.",
)


@click.group()
def schema() -> None:
    """Lock the shapes of your events; check changes against them (for CI)."""


@schema.command("lock")
@_modules_option
@_lock_option
@click.option(
    "--force",
    is_flag=True,
    help="Record the classes even if they cannot read what the lock records"
    " (safe only while no event of the changed types is stored anywhere).",
)
def schema_lock(modules: tuple[str, ...], lock_path: Path, force: bool) -> None:
    """Write the JSON Schema of every event type and schema version to the lock file.

    Older schema versions stay recorded. Refuses a change that the classes could
    not read (see `schema check`), unless --force.
    """
    from eventsource.schema.check import check, relock
    from eventsource.schema.lock import write_lock

    recorded = read_lock(lock_path) if lock_path.exists() else SchemaLock(events={})
    chosen = _import(modules or recorded.modules)
    try:
        lock = relock(recorded, default_registry, chosen, force=force, source=str(lock_path))
    except IncompatibleSchema as exc:
        _print_lines(exc.problems)
        click.echo(f"{lock_path} was not changed (--force records the classes anyway)", err=True)
        raise
    for problem in check(recorded, default_registry):  # only when forced
        click.echo(f"recorded anyway: {problem}", err=True)
    summary = f"{len(lock.events)} event type(s), {lock.shape_count} shape(s)"
    if lock == recorded:
        click.echo(f"{lock_path} is up to date: {summary}")
        return
    write_lock(lock_path, lock)
    click.echo(f"wrote {lock_path}: {summary}")


@schema.command("check")
@_modules_option
@_lock_option
@click.option(
    "--locked",
    is_flag=True,
    help="Also fail when the lock does not record compatible changes yet (run `schema lock`).",
)
@click.option(
    "--database",
    "--url",
    "url",
    metavar="URL",
    help="Instead of the lock, decode the events stored in this database (read-only).",
)
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=None,
    help="With --database: decode the first N events of each type and schema version"
    " (default: all).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def schema_check(
    modules: tuple[str, ...],
    lock_path: Path,
    locked: bool,
    url: str | None,
    sample: int | None,
    as_json: bool,
) -> None:
    """Fail (exit 1, one line per problem) when the classes cannot read a recorded shape.

    Against the lock file: a field removed or retyped, a new required field, an
    optional field made required, a type renamed or removed, a schema_version
    raised without an upcaster from each recorded one. A new optional field or
    a new type passes (`schema lock` then records it). Meant for CI.

    With --database URL: decode the stored events of every type and schema
    version through the current classes and upcasters, changing nothing.
    """
    if url is None:
        if sample is not None:
            raise click.UsageError("--sample needs --database")
        _check_lock(modules, lock_path, locked=locked, as_json=as_json)
        return
    if locked:
        raise click.UsageError("--locked checks the lock file; it does not go with --database")
    if not modules and lock_path.exists():
        modules = read_lock(lock_path).modules
    _check_database(url, _import(modules), sample, as_json)


def _check_lock(modules: tuple[str, ...], lock_path: Path, *, locked: bool, as_json: bool) -> None:
    from eventsource.console import print_json
    from eventsource.schema.check import check, unrecorded

    recorded = read_lock(lock_path)
    _import(modules or recorded.modules)
    problems = check(recorded, default_registry)
    pending = [] if problems else unrecorded(recorded, default_registry)
    if as_json:
        print_json(
            {
                "lock": str(lock_path),
                "problems": [p.as_dict() for p in problems],
                "unrecorded": pending,
            }
        )
    else:
        _print_lines([str(p) for p in problems])
    if problems:
        raise IncompatibleSchema(str(lock_path), [str(p) for p in problems])
    summary = f"{len(recorded.events)} event type(s), {recorded.shape_count} shape(s)"
    if pending:
        if not as_json:
            for line in pending:
                click.echo(f"not recorded yet: {line}", err=True)
        if locked:
            raise ConfigurationError(
                f"{lock_path} does not record {len(pending)} compatible change(s) yet:"
                " run `eventsource schema lock` and commit it"
            )
    if not as_json:
        click.echo(f"{lock_path}: the classes read every recorded shape ({summary})")


def _check_database(url: str, modules: tuple[str, ...], sample: int | None, as_json: bool) -> None:
    from eventsource.console import ProgressReport
    from eventsource.schema.dryrun import dry_run
    from eventsource.store.eventstore import EventStore

    settings = settings_from(url)
    where = describe_url(settings.database_url)
    engine = existing_engine(settings, needs="events")  # never creates or migrates one
    try:
        store = EventStore(engine, context=settings.context)
        with (
            stop_on_signals() as stop,
            ProgressReport(f"decoding {where}", unit="positions") as report,
        ):
            result = dry_run(
                store,
                sample=sample,
                stop=stop,
                on_progress=lambda position, head: report.update(position, total=head),
            )
            _print_dry_run(result, where, as_json)
            if not result.complete:  # exiting here shows the progress as stopped, not done
                click.echo(
                    f"stopped at position {result.reached:,} of {result.head:,}: the events"
                    " after it were not checked",
                    err=True,
                )
                sys.exit(1)
    finally:
        engine.dispose()
    if result.failures:
        raise IncompatibleSchema(where, [str(r) for r in result.failures])
    if not as_json:
        click.echo(f"{where}: every checked event decodes (up to position {result.head:,})")


def _print_dry_run(result: DryRun, where: str, as_json: bool) -> None:
    from eventsource.console import print_json

    if as_json:
        print_json(
            {
                "database": where,
                "head": result.head,
                "reached": result.reached,
                "complete": result.complete,
                "types": [r.as_dict() for r in result.reports],
            }
        )
    else:
        _print_lines([str(r) for r in result.reports])


def _import(modules: tuple[str, ...]) -> tuple[str, ...]:
    """Import the modules that define the app's events; they must register some."""
    if not modules:
        raise ConfigurationError(
            "name the modules that define your event classes with --import MODULE"
            " (repeatable); `schema lock` records them in the lock file for later runs"
        )
    import_modules(modules)
    if not app_types(default_registry):
        raise ConfigurationError(
            f"no event classes are registered after importing {', '.join(modules)}:"
            " name the modules that define them"
        )
    return tuple(modules)


def _print_lines(lines: tuple[str, ...] | list[str]) -> None:
    for line in lines:
        click.echo(line)
