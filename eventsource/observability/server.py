"""The HTTP endpoints of a running process: `/metrics`, `/healthz`, `/readyz`.

`--metrics-port` starts it beside `projection run` and `relay run`, bound to
127.0.0.1 unless `--metrics-host` says otherwise. `/healthz` answers 200
while the process's loops go round (a liveness probe: restart it when not),
`/readyz` 200 while it is also not waiting for its database or broker; both
answer a small JSON object saying why.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from eventsource.errors import ConfigurationError

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


@dataclass(frozen=True)
class Health:
    live: bool
    ready: bool
    detail: dict[str, Any] = field(default_factory=dict)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes come every few seconds: no line per request."""


class ObservabilityServer:
    """Serves a registry's metrics and a process's health in a thread of its own."""

    def __init__(
        self,
        registry: CollectorRegistry,
        health: Callable[[], Health],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.registry = registry
        self.health = health
        try:
            self._server: WSGIServer = make_server(host, port, self._app, handler_class=_Quiet)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConfigurationError(
                f"cannot serve metrics on {host}:{port}: {reason}; choose another"
                " --metrics-port (0 picks a free one) or --metrics-host"
            ) from exc
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="observability", daemon=True
        )

    def __enter__(self) -> ObservabilityServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def _app(self, environ: dict[str, Any], start: StartResponse) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            start("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
            return [generate_latest(self.registry)]
        if path in ("/healthz", "/readyz"):
            health = self.health()
            ok = health.live if path == "/healthz" else health.live and health.ready
            body = orjson.dumps({"live": health.live, "ready": health.ready, **health.detail})
            status = "200 OK" if ok else "503 Service Unavailable"
            start(status, [("Content-Type", "application/json")])
            return [body]
        start("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: /metrics, /healthz and /readyz are served here\n"]
