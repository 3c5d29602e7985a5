"""The `eventsource` command.

Configuration comes from `EVENTSOURCE_*` variables (see `Settings`); options
given on the command line win. Every error is one line that says what was
wrong and what to do, with exit status 1; `--traceback` shows the whole one.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from eventsource import __version__, console
from eventsource.cli import logs
from eventsource.cli.common import describe_settings_error, settings_from
from eventsource.errors import EventSourceError
from eventsource.settings import describe, unknown_variables

log = logging.getLogger("eventsource.cli")

_show_traceback = False


@click.group()
@click.version_option(__version__, prog_name="eventsource")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object per log line, for log collectors.",
)
@click.option("--traceback", is_flag=True, help="Show the whole traceback of an error.")
@click.option(
    "--app-dir",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where your modules are imported from (package.module:Class).",
)
@click.option("--show-config", is_flag=True, help="Print the resolved settings (secrets masked).")
def cli(verbose: int, log_format: str, traceback: bool, app_dir: str, show_config: bool) -> None:
    """Event sourcing with SQL event stores and Kafka: the inside-out database."""
    global _show_traceback  # noqa: PLW0603 - read by main() once the command has failed
    _show_traceback = traceback
    logs.configure(
        verbose=verbose,
        json_lines=log_format == "json",
        worker=os.environ.get("EVENTSOURCE_WORKER_NAME"),
    )
    if log_format == "json":
        console.progress_as_log_records()
    # Like uvicorn and celery: the user's modules are found from the current folder.
    sys.path.insert(0, str(Path(app_dir).resolve()))
    for warning in unknown_variables(os.environ):
        log.warning("%s", warning)
    if show_config or verbose:
        try:
            resolved = describe(settings_from())
        except EventSourceError:
            return  # the command itself will say what is wrong
        for name, value in resolved.items():
            (click.echo if show_config else log.info)(f"{name}={value}")


def main() -> None:
    """Entry point of the console script."""
    try:
        code = cli(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        # A mistyped option or value: one line, as for every other error.
        click.echo(f"error: {exc.format_message()} (see --help)", err=True)
        sys.exit(1)
    except Exception as exc:
        if _show_traceback:
            raise
        click.echo(f"error: {one_line(exc)}", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def one_line(exc: BaseException) -> str:
    """What went wrong, in one line, without secrets."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    if isinstance(exc, SettingsError | ValidationError):
        return describe_settings_error(exc)
    text = " ".join(str(exc).split())
    if isinstance(exc, EventSourceError):
        return text
    return f"{type(exc).__name__}: {text} (run with --traceback for the details)"


def _add_commands() -> None:
    from eventsource.cli import db, events, projection, relay

    for group in (db.db, relay.relay, events.events, projection.projection):
        cli.add_command(group)
    from eventsource.cli.schema import schema

    cli.add_command(schema)
    from eventsource.cli.forget import forget

    cli.add_command(forget)
    from eventsource.cli.dashboard import dashboard

    cli.add_command(dashboard)
    from eventsource.cli.transform import transform

    cli.add_command(transform)


_add_commands()
