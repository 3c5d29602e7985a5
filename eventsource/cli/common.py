"""What every command shares: settings, the database it opens, signals, tuning.

Configuration comes from `EVENTSOURCE_*` variables (see `Settings`); options
given on the command line win. Mistakes in either are one-line errors that
name the variable or option and say what to do.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError
from pydantic_settings import SettingsError
from sqlalchemy import Engine, inspect
from sqlalchemy.engine import make_url

from eventsource.errors import ConfigurationError, StoreError
from eventsource.settings import Settings
from eventsource.store.engine import create_engine
from eventsource.tuning import InterpreterTuning

log = logging.getLogger("eventsource.cli")

F = TypeVar("F", bound=Callable[..., Any])


def settings_from(
    url: str | None = None, context: str | None = None, stores: str | None = None
) -> Settings:
    """The settings of `EVENTSOURCE_*` variables, with the options given on top."""
    overrides: dict[str, Any] = {
        k: v for k, v in {"database_url": url, "context": context}.items() if v
    }
    if stores:
        overrides["stores"] = _json_option("--stores", stores)
    try:
        return Settings(**overrides)
    except (SettingsError, ValidationError) as exc:
        raise ConfigurationError(describe_settings_error(exc)) from exc


def describe_settings_error(exc: Exception) -> str:
    """One line naming the variable (or option) that could not be read."""
    if isinstance(exc, ValidationError):
        problems = []
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"]) or "settings"
            name = f"EVENTSOURCE_{field.split('.')[0].upper()}"
            problems.append(f"{name}: {error['msg']}")
        return "; ".join(problems)
    text = str(exc)
    if 'field "' in text:
        field = text.split('field "', 1)[1].split('"', 1)[0]
        return (
            f"EVENTSOURCE_{field.upper()} is not valid JSON"
            f' (for example EVENTSOURCE_STORES=\'{{"orders": "sqlite:///orders.db"}}\')'
        )
    return text


def _json_option(option: str, value: str) -> Any:
    import orjson

    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ConfigurationError(f"{option} is not valid JSON: {exc}") from exc


def describe_url(url: str) -> str:
    """The URL as safe to print (no password)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unreadable URL>"


def check_url(url: str, option: str = "--url or EVENTSOURCE_DATABASE_URL") -> None:
    """Refuse a URL that is not one before anything connects with it."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigurationError(
            f"{option}: {url!r} is not a database URL; use sqlite:///path/to/file.db"
            " or postgresql://user:password@host:5432/database"
        ) from exc
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.host:
        # sqlite://data/x.db reads "data" as a host: the path needs a third slash.
        raise ConfigurationError(
            f"{option}: {describe_url(url)} names a host; a SQLite file is"
            f" sqlite:///{parsed.host}/{parsed.database} (three slashes for a relative"
            " path, four for an absolute one)"
        )


def existing_engine(settings: Settings, *, needs: str = "projections") -> Engine:
    """An engine on a database that exists and holds eventsource's tables.

    For read-only commands: they never create or migrate a database.
    """
    url = settings.database_url
    check_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        if not path.exists():
            raise ConfigurationError(
                f"no database at {path} ({describe_url(url)}); check --url or"
                " EVENTSOURCE_DATABASE_URL (this command never creates one)"
            )
    engine = create_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
    except StoreError:
        engine.dispose()
        raise
    if needs not in tables:
        engine.dispose()
        raise ConfigurationError(
            f"{describe_url(url)} holds no eventsource {needs} table; is it the right"
            " database? (`eventsource db upgrade` creates the tables)"
        )
    return engine


def require_database(settings: Settings, *, what: str) -> None:
    """Refuse to create a database from the implicit default: say so, and how."""
    url = settings.database_url
    check_url(url)
    if "database_url" in settings.model_fields_set:
        return
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and Path(parsed.database or "").exists():
        return
    raise ConfigurationError(
        f"no database is configured for {what}: set EVENTSOURCE_DATABASE_URL or pass --url"
        f" (to use the embedded default, pass --url {url})"
    )


def announce(settings: Settings) -> None:
    """Say at start which database and context a command uses."""
    mode = "embedded log" if settings.embedded else f"Kafka {settings.kafka_bootstrap_servers}"
    log.info(
        "context %r, database %s, %s",
        settings.context,
        describe_url(settings.database_url),
        mode,
    )


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGTERM or SIGINT: long loops finish their batch and return.

    A second signal while stopping ends the process at once.
    """
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        if stop.is_set():
            log.warning("received %s again; exiting now", signal.Signals(signum).name)
            sys.exit(128 + signum)
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


def context_options(command: F) -> F:
    """`--url`, `--context` and `--stores`: which context, where its database is."""
    command = click.option(
        "--stores",
        help="Embedded mode: JSON of other contexts' databases (default: EVENTSOURCE_STORES).",
    )(command)
    command = click.option(
        "--url", help="The context's database URL (default: EVENTSOURCE_DATABASE_URL)."
    )(command)
    return click.option("--context", help="The bounded context (default: EVENTSOURCE_CONTEXT).")(
        command
    )


def metrics_options(command: F) -> F:
    """`--metrics-port` and `--metrics-host`: serve /metrics, /healthz and /readyz."""
    command = click.option(
        "--metrics-host",
        default="127.0.0.1",
        show_default=True,
        help="Address to serve metrics and health on (0.0.0.0 for every interface).",
    )(command)
    return click.option(
        "--metrics-port",
        type=click.IntRange(0, 65535),
        default=None,
        help="Serve Prometheus metrics (/metrics) and health (/healthz, /readyz) on this port.",
    )(command)


@contextmanager
def observability(
    port: int | None, host: str, registry: Any, health: Callable[[], Any]
) -> Iterator[None]:
    """The metrics and health endpoints while the block runs (if a port is given)."""
    if port is None:
        yield
        return
    from eventsource.observability.server import ObservabilityServer

    with ObservabilityServer(registry, health, host=host, port=port) as server:
        log.info(
            "metrics and health on http://%s:%d (/metrics, /healthz, /readyz)", host, server.port
        )
        yield
