"""The schema lock: the recorded shape of every event type and schema version of an app.

The lock file is JSON with sorted keys, one key per line, so that a change to an
event class shows as a small diff in review::

    {
      "about": "...",
      "events": {
        "OrderPlaced": {
          "class": "sample_app.orders.events:OrderPlaced",
          "versions": {"1": {<JSON Schema of the payload>}}
        }
      },
      "format": 1,
      "modules": ["sample_app.orders.events"]
    }

Each schema is pydantic's `model_json_schema()` (validation mode: what decoding
accepts) of the event class, without the metadata fields, which are stored in
columns of their own rather than in the payload.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import orjson
import pydantic
from pydantic import BaseModel, ConfigDict, Field

from eventsource.errors import ConfigurationError
from eventsource.events.base import METADATA_FIELDS, Event
from eventsource.events.registry import EventRegistry

LOCK_FILE = "eventsource.schema.lock.json"
ABOUT = (
    "The recorded shapes of this app's events, written by `eventsource schema lock`"
    " and checked by `eventsource schema check`. Commit it; do not edit it by hand."
)

JsonSchema = dict[str, Any]


class LockedType(BaseModel):
    """The recorded shapes of one event type, by schema version."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    event_class: str = Field(alias="class")
    versions: dict[int, JsonSchema]

    @property
    def latest(self) -> int:
        """The highest schema version recorded."""
        return max(self.versions)


class SchemaLock(BaseModel):
    """What a lock file holds: the modules that define the events, and their shapes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    about: str = ABOUT
    format: Literal[1] = 1
    modules: tuple[str, ...] = ()
    events: dict[str, LockedType]

    @property
    def shape_count(self) -> int:
        """How many (type, schema version) shapes are recorded."""
        return sum(len(t.versions) for t in self.events.values())

    def dumps(self) -> str:
        """The lock as the stable, sorted JSON text of its file."""
        data = self.model_dump(mode="json", by_alias=True)
        return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"

    @classmethod
    def loads(cls, text: str | bytes, *, source: str = "the lock") -> SchemaLock:
        """Parse a lock file's text; a file that is not one is a `ConfigurationError`."""
        try:
            return cls.model_validate_json(text)
        except pydantic.ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "<root>"
            raise ConfigurationError(
                f"{source} is not a schema lock written by `eventsource schema lock`"
                f" ({where}: {first['msg']}); restore it from version control"
            ) from exc


def event_schema(cls: type[Event]) -> JsonSchema:
    """The JSON Schema of an event class's stored payload (pydantic's, without metadata)."""
    try:
        schema = cls.model_json_schema()
    except pydantic.PydanticUserError as exc:
        raise ConfigurationError(
            f"{class_path(cls)} cannot be described as JSON Schema: {exc}"
        ) from exc
    properties = schema.get("properties", {})
    schema["properties"] = {k: v for k, v in properties.items() if k not in METADATA_FIELDS}
    required = [name for name in schema.get("required", []) if name not in METADATA_FIELDS]
    if required:
        schema["required"] = required
    else:
        schema.pop("required", None)
    return schema


def class_path(cls: type[Event]) -> str:
    """`package.module:Class`, as the command line names classes."""
    return f"{cls.__module__}:{cls.__qualname__}"


def app_types(registry: EventRegistry) -> dict[str, type[Event]]:
    """The registered classes an app defines: the framework's own events (the
    `PersonalDataForgotten` notice) are its contract, not the app's."""
    return {
        name: cls
        for name, cls in registry.types().items()
        if cls.__module__ != "eventsource.events.notices"
    }


def current_lock(registry: EventRegistry, modules: tuple[str, ...] = ()) -> SchemaLock:
    """The shapes of the registered classes as they are now (one version per type)."""
    events = {
        name: LockedType(
            event_class=class_path(cls), versions={cls.schema_version: event_schema(cls)}
        )
        for name, cls in app_types(registry).items()
    }
    return SchemaLock(modules=modules, events=events)


def merge(recorded: SchemaLock, current: SchemaLock) -> SchemaLock:
    """The current shapes, plus the recorded older schema versions of each current type.

    Older versions stay for as long as their type exists: events stored at them
    are read through upcasters, which the check keeps asking for. Types that are
    no longer registered are dropped (the check refuses that unless forced).
    """
    events: dict[str, LockedType] = {}
    for name, now in current.events.items():
        before = recorded.events.get(name)
        older = {v: s for v, s in (before.versions if before else {}).items() if v < now.latest}
        events[name] = LockedType(event_class=now.event_class, versions={**older, **now.versions})
    return SchemaLock(modules=current.modules, events=events)


def read_lock(path: Path) -> SchemaLock:
    """The lock recorded in `path`."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(
            f"no schema lock at {path}: record one with `eventsource schema lock --import"
            " MODULE` and commit it"
        ) from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from exc
    return SchemaLock.loads(text, source=str(path))


def write_lock(path: Path, lock: SchemaLock) -> None:
    """Write `lock` to `path`, whole or not at all."""
    partial = path.with_name(path.name + ".tmp")
    try:
        partial.write_text(lock.dumps(), encoding="utf-8")
        partial.replace(path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ConfigurationError(f"cannot write {path}: {exc.strerror}") from exc
