"""Event classes built per test: several shapes of one event type, each in a registry of its own."""

from __future__ import annotations

from typing import Any

from eventsource import Event
from eventsource.events.registry import EventRegistry, Upcaster


def shape(event_type: str, schema_version: int = 1, /, **fields: Any) -> type[Event]:
    """A class of `event_type` with these fields: `name=type`, or `name=(type, default)`.

    Shapes of one type share a module and qualified name, so the default registry
    (which every Event subclass joins) takes each as a redefinition, not a clash.
    """
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {
        "__module__": __name__,
        "__qualname__": f"Shape[{event_type}]",
        "event_type": event_type,
        "schema_version": schema_version,
    }
    for name, spec in fields.items():
        if isinstance(spec, tuple):
            annotations[name], namespace[name] = spec
        else:
            annotations[name] = spec
    namespace["__annotations__"] = annotations
    return type(event_type.replace(".", "_"), (Event,), namespace)


def registry(
    *classes: type[Event], upcasters: dict[tuple[str, int], Upcaster] | None = None
) -> EventRegistry:
    """A registry of just these classes and upcasters."""
    found = EventRegistry()
    for cls in classes:
        found.register(cls)
    for (event_type, from_version), function in (upcasters or {}).items():
        found.add_upcaster(event_type, from_version, function)
    return found
