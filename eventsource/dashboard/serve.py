"""Where the dashboard listens, who may read it, and the server loop."""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable

from starlette.applications import Starlette

from eventsource.errors import ConfigurationError

log = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 16


def is_loopback(host: str) -> bool:
    """True when `host` is only reachable from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def check_token(host: str, token: str | None) -> None:
    """Refuse to serve beyond this machine without a token, or with a short one."""
    if token is None and not is_loopback(host):
        raise ConfigurationError(
            f"--host {host} serves the dashboard beyond this machine: give it a token"
            " (EVENTSOURCE_DASHBOARD_TOKEN or --token; make one with"
            " `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise ConfigurationError(
            f"the dashboard's token is {len(token)} characters long: use at least"
            f" {MIN_TOKEN_CHARS} (`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on `host`:`port` (port 0: any free one)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


def address_of(sock: socket.socket) -> str:
    """`http://host:port/` of a listening socket."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def run(
    app: Starlette,
    sock: socket.socket,
    *,
    stop: threading.Event,
    on_ready: Callable[[str], None],
) -> None:
    """Serve `app` on `sock` until `stop` is set; `on_ready(url)` once listening.

    uvicorn runs on a thread of its own, so that it leaves the process's
    signal handling to the caller (on its main thread it would take SIGTERM
    over and end the process by re-raising it once shut down).
    """
    import uvicorn

    config = uvicorn.Config(
        app,
        lifespan="on",
        log_config=None,  # the command configures logging; uvicorn's loggers follow it
        access_log=False,
        server_header=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    failed: list[BaseException] = []

    def serve() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=serve, name="dashboard-server", daemon=True)
    thread.start()
    on_ready(address_of(sock))
    while thread.is_alive() and not stop.wait(0.2):
        pass
    server.should_exit = True
    thread.join()
    if failed:
        raise failed[0]
