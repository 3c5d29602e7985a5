"""Stable type names for event classes, and the upcasters between schema versions."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from eventsource.errors import ConfigurationError

if TYPE_CHECKING:
    from eventsource.events.base import Event

log = logging.getLogger(__name__)

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]
F = TypeVar("F", bound=Upcaster)


class EventRegistry:
    """Maps stored type names to event classes and holds the upcaster chains."""

    def __init__(self) -> None:
        self._classes: dict[str, type[Event]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        self._lock = threading.Lock()

    def register(self, cls: type[Event]) -> None:
        """Register `cls` under its `event_type`; a clash with another class is an error."""
        name = cls.event_type
        with self._lock:
            existing = self._classes.get(name)
            if existing is not None and existing is not cls and not _same_definition(existing, cls):
                raise ConfigurationError(
                    f"event type name {name!r} is already used by"
                    f" {existing.__module__}.{existing.__qualname__}; give"
                    f" {cls.__module__}.{cls.__qualname__} its own `event_type`"
                )
            self._classes[name] = cls

    def resolve(self, name: str) -> type[Event] | None:
        """The class registered under `name`, or None."""
        return self._classes.get(name)

    def types(self) -> dict[str, type[Event]]:
        """Every registered class by its type name (a copy, sorted by name)."""
        with self._lock:
            return dict(sorted(self._classes.items()))

    def lookup(self) -> Callable[[str], type[Event] | None]:
        """`resolve` as the registry's own dict lookup, for decoding loops; it
        sees classes registered later too."""
        return self._classes.get

    def add_upcaster(self, event_type: str, from_version: int, function: Upcaster) -> None:
        """Register `function` to turn a payload of `from_version` into `from_version + 1`."""
        key = (event_type, from_version)
        with self._lock:
            if key in self._upcasters and self._upcasters[key] is not function:
                raise ConfigurationError(
                    f"an upcaster for {event_type!r} from schema version {from_version}"
                    " is already registered"
                )
            self._upcasters[key] = function

    def upcaster(self, event_type: str, from_version: int) -> Upcaster | None:
        """The upcaster from `from_version` of `event_type`, or None."""
        return self._upcasters.get((event_type, from_version))


def _same_definition(a: type[Event], b: type[Event]) -> bool:
    # Re-executing a module (a reload, or a script run twice in a REPL)
    # redefines the same class; that replaces it rather than clashing.
    return (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)


default_registry = EventRegistry()


def upcaster(event: type[Event] | str, from_version: int) -> Callable[[F], F]:
    """Register a function that upgrades a stored payload by one schema version.

    ::

        @upcaster(OrderPlaced, from_version=1)
        def _add_currency(payload: dict[str, Any]) -> dict[str, Any]:
            return {**payload, "currency": "EUR"}

    Decoding an event stored at version 1 runs every upcaster from 1 up to the
    class's current `schema_version`. Stored rows are never rewritten.
    """
    name = event if isinstance(event, str) else event.event_type
    if from_version < 1:
        raise ConfigurationError(f"from_version must be at least 1, got {from_version}")

    def register(function: F) -> F:
        default_registry.add_upcaster(name, from_version, function)
        return function

    return register
