"""`eventsource dashboard`: serve a read-only web page of consumers, dead letters and events."""

from __future__ import annotations

from contextlib import ExitStack

import click
from sqlalchemy import Engine

from eventsource.cli.common import (
    context_options,
    existing_engine,
    settings_from,
    stop_on_signals,
)
from eventsource.errors import ConfigurationError
from eventsource.settings import Settings


@click.command()
@click.argument("names", nargs=-1)
@context_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8700, show_default=True, type=click.IntRange(0, 65535), help="0: any free."
)
@click.option(
    "--token",
    help="Token the page must send; required beyond loopback"
    " (default: EVENTSOURCE_DASHBOARD_TOKEN, which `ps` does not show).",
)
@click.option(
    "--interval",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0.5),
    help="Seconds between two samples.",
)
@click.option(
    "--history",
    default=900.0,
    show_default=True,
    type=click.FloatRange(min=10),
    help="Seconds of lag history kept for the sparklines.",
)
@click.option(
    "--events",
    "tail",
    default=30,
    show_default=True,
    type=click.IntRange(min=1, max=1000),
    help="How many of the latest events to show.",
)
@click.option(
    "--payloads",
    is_flag=True,
    help="Also show the events' payloads (business data, maybe personal).",
)
def dashboard(
    names: tuple[str, ...],
    context: str | None,
    url: str | None,
    stores: str | None,
    host: str,
    port: int,
    token: str | None,
    interval: float,
    history: float,
    tail: int,
    payloads: bool,
) -> None:
    """Serve a read-only page of projections, reactors and transforms, their lag,
    dead letters, deadlines and the latest events, refreshed every few seconds.

    NAMES are package.module:Class of the context given by --context, or
    context=package.module:Class of another context in --stores, or
    package.module:name of a transform (of its output's context). The page never
    changes anything: replay and skip stay in the CLI.
    """
    _require_extra()
    from eventsource.dashboard.app import LOOPBACK_NAMES, create_app
    from eventsource.dashboard.sampler import Sampler
    from eventsource.dashboard.serve import check_token, is_loopback, listen, run
    from eventsource.dashboard.sources import Sources, watched

    settings = _own_url_from_stores(settings_from(url, context, stores))
    secret = token or (
        settings.dashboard_token.get_secret_value() if settings.dashboard_token else None
    )
    check_token(host, secret)
    consumers = [watched(name, settings.context) for name in names]
    with ExitStack() as stack:
        engines = _existing_engines(settings, stack)
        sampler = Sampler(
            Sources(settings, consumers, engines),
            interval=interval,
            history=history,
            tail=tail,
            payloads=payloads,
        )
        stack.callback(sampler.close)
        app = create_app(
            sampler, token=secret, allowed_hosts=LOOPBACK_NAMES if is_loopback(host) else None
        )
        sock = stack.enter_context(listen(host, port))
        stop = stack.enter_context(stop_on_signals())

        def ready(address: str) -> None:
            contexts = ", ".join(sorted(engines))
            hint = " (open it with #token=<token> after the address)" if secret else ""
            click.echo(f"dashboard of {contexts} on {address}{hint}", nl=True)

        run(app, sock, stop=stop, on_ready=ready)


def _require_extra() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ConfigurationError(
            f"the dashboard needs Starlette and uvicorn ({exc}):"
            " pip install 'eventsource[dashboard]'"
        ) from exc


def _own_url_from_stores(settings: Settings) -> Settings:
    """With every context in --stores, --context alone picks one: its URL is there."""
    listed = settings.stores.get(settings.context)
    if listed is not None and "database_url" not in settings.model_fields_set:
        return settings.model_copy(update={"database_url": listed})
    return settings


def _existing_engines(settings: Settings, stack: ExitStack) -> dict[str, Engine]:
    """An engine on each context's database; refused if one is missing (never created)."""
    engines: dict[str, Engine] = {}
    for context, url in settings.store_urls().items():
        engine = existing_engine(settings.model_copy(update={"database_url": url}), needs="events")
        stack.callback(engine.dispose)
        engines[context] = engine
    return engines
