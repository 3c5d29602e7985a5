"""The web side: one page, its assets, and the latest snapshot as JSON.

Served by Starlette on uvicorn (the `dashboard` extra) rather than the
standard library's `http.server`, which its own documentation calls unfit
for production: it has no request or keep-alive timeouts (a slow client
holds a thread for as long as it likes), no bounded header parsing, and no
lifespan to start and stop the sampler with the server. uvicorn brings a
maintained HTTP parser, those timeouts and a graceful shutdown on SIGTERM;
Starlette brings routing, static files with the right types, and a
trusted-host check. Both stay out of the core dependencies: only the
`dashboard` extra installs them.

What a request can do: GET (or HEAD) the page, its assets and
`/api/snapshot`; nothing else exists. The page and its assets hold no data
and are served to anyone who reaches the port; the snapshot needs the token
when one is set (`Authorization: Bearer <token>`, compared in constant time).
On loopback the Host header must name loopback too, so that a web page that
rebinds its own domain name to 127.0.0.1 cannot read the snapshot.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib import resources

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventsource.dashboard.sampler import Sampler

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")

# Scripts, styles and requests only from the page's own origin; it is never framed.
_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def create_app(
    sampler: Sampler, *, token: str | None = None, allowed_hosts: Sequence[str] | None = None
) -> Starlette:
    """The dashboard's ASGI app; it starts `sampler` on startup and closes it on shutdown.

    `token`: required of `/api/snapshot` when given. `allowed_hosts`: the Host
    header names accepted (None: any).
    """
    expected = token.encode() if token else None
    page = resources.files(__package__).joinpath("static", "index.html").read_text("utf-8")

    async def index(_request: Request) -> Response:
        return HTMLResponse(page, headers={"cache-control": "no-cache"})

    async def snapshot(request: Request) -> Response:
        if expected is not None and not _authorized(request, expected):
            return JSONResponse(
                {"error": "this dashboard needs its token"},
                status_code=401,
                headers={"www-authenticate": "Bearer", "cache-control": "no-store"},
            )
        body, age = sampler.latest()
        headers = {"cache-control": "no-store"}
        if age is not None:
            # The server's own clock: the page tells a stalled sampler from
            # a slow one without trusting the browser's clock.
            headers["x-snapshot-age"] = f"{age:.1f}"
        return Response(body, media_type="application/json", headers=headers)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        sampler.start()
        try:
            yield
        finally:
            sampler.close()

    middleware = [Middleware(_SecurityHeaders)]
    if allowed_hosts is not None:
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))
    return Starlette(
        routes=[
            Route("/", index, methods=["GET"]),
            Route("/api/snapshot", snapshot, methods=["GET"]),
            Mount(
                "/static",
                StaticFiles(packages=[("eventsource.dashboard", "static")]),
                name="static",
            ),
        ],
        middleware=middleware,
        lifespan=lifespan,
    )


def _authorized(request: Request, expected: bytes) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    # compare_digest takes as long whatever prefix matches: the token cannot
    # be guessed a character at a time from response times.
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected)


class _SecurityHeaders:
    """Adds `_HEADERS` to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
