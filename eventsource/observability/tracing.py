"""OpenTelemetry traces across services, when the application sets them up.

When the `opentelemetry` API is installed and the application has set a
tracer provider, a save is a span, the trace context is stored with each
event (its metadata's `traceparent`), the relay publishes it as a
`traceparent` header and a span per batch (linked to the events' traces),
and each handler call is a span whose parent is the saving span, in
whichever service handles the event. So one trace runs from
`Repository.save` in one context to the handlers in others.

Without the API, or without a provider, none of it runs: `active()` is one
check, and nothing is stored or published.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import orjson

from eventsource.events.records import StoredEvent

try:  # an optional dependency
    from opentelemetry import propagate, trace
except ImportError:  # pragma: no cover - exercised where the API is not installed
    propagate = None  # type: ignore[assignment]
    trace = None  # type: ignore[assignment]

TRACER = "eventsource"
TRACEPARENT = "traceparent"


def active() -> bool:
    """Whether the application traces: the API is there and a provider is set."""
    if trace is None:
        return False
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _tracer() -> Any:
    return trace.get_tracer(TRACER)


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span, if there is one."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get(TRACEPARENT)


Attributes = dict[str, Any]


def span(name: str, attributes: Attributes) -> AbstractContextManager[Any]:
    """A span for the block (a no-op when not tracing)."""
    if not active():
        return nullcontext()
    return _tracer().start_as_current_span(name, attributes=attributes)  # type: ignore[no-any-return]


@contextmanager
def handling(name: str, traceparent: str | None, attributes: Attributes) -> Iterator[None]:
    """A handler's span, a child of the span that saved the event."""
    parent = propagate.extract({TRACEPARENT: traceparent}) if traceparent else None
    with _tracer().start_as_current_span(
        name, context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes
    ):
        yield


@contextmanager
def publishing(name: str, traceparents: Sequence[str], attributes: Attributes) -> Iterator[None]:
    """The relay's span for one batch, linked to the traces of its events."""
    links = []
    for text in traceparents[:MAX_LINKS]:
        context = trace.get_current_span(propagate.extract({TRACEPARENT: text})).get_span_context()
        links.append(trace.Link(context))
    with _tracer().start_as_current_span(
        name, kind=trace.SpanKind.PRODUCER, links=links, attributes=attributes
    ):
        yield


MAX_LINKS = 128


def stamp(records: list[StoredEvent]) -> list[StoredEvent]:
    """The records with the current trace context in their metadata."""
    traceparent = current_traceparent()
    if traceparent is None:
        return records
    return [r._replace(metadata=with_traceparent(r.metadata, traceparent)) for r in records]


def with_traceparent(metadata: str, traceparent: str) -> str:
    meta = orjson.loads(metadata) if metadata not in ("", "{}") else {}
    meta[TRACEPARENT] = traceparent
    return orjson.dumps(meta).decode()


def traceparent_of(metadata: str) -> str | None:
    """The `traceparent` stored in a record's metadata (None when none is)."""
    if TRACEPARENT not in metadata:
        return None
    try:
        value = orjson.loads(metadata).get(TRACEPARENT)
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) else None
