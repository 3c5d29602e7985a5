"""The schema check: can the current event classes still read every recorded shape?

The rules (docs/schema-evolution.md explains them and the deploy order):

* within one schema version, a class may only gain optional fields;
* any other change to a type's fields (removing, retyping, a new required
  field, an optional field made required) raises its `schema_version`, with
  an upcaster from each older version;
* a type name that has stored events keeps a class, and `schema_version`
  never goes down.
"""

from __future__ import annotations

from dataclasses import dataclass

from eventsource.errors import IncompatibleSchema
from eventsource.events.base import Event
from eventsource.events.registry import EventRegistry
from eventsource.schema.compare import COMPATIBLE, Change, changes
from eventsource.schema.lock import (
    LockedType,
    SchemaLock,
    app_types,
    current_lock,
    event_schema,
    merge,
)


@dataclass(frozen=True)
class Problem:
    """One recorded shape the current classes can no longer read, and what to do."""

    event_type: str
    schema_version: int
    message: str

    def __str__(self) -> str:
        return f"{self.event_type} v{self.schema_version}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {
            "event_type": self.event_type,
            "schema_version": self.schema_version,
            "message": self.message,
        }


def check(recorded: SchemaLock, registry: EventRegistry) -> list[Problem]:
    """Every way in which the registered classes and upcasters fail the recorded shapes.

    An empty list means that every recorded shape can still be read and that
    readers of the recorded shapes can read what the classes write now.
    """
    problems: list[Problem] = []
    for name, locked in recorded.events.items():
        cls = registry.resolve(name)
        if cls is None:
            problems.append(_gone(name, locked, recorded, registry))
        else:
            problems += _check_type(name, locked, cls, registry)
    return problems


def unrecorded(recorded: SchemaLock, registry: EventRegistry) -> list[str]:
    """The compatible changes that the lock does not record yet, one line each
    (empty when `schema lock` would leave the lock as it is)."""
    lines: list[str] = []
    for name, now in current_lock(registry).events.items():
        before = recorded.events.get(name)
        version = now.latest
        if before is None:
            lines.append(f"{name} v{version}: new event type")
        elif version not in before.versions:
            lines.append(f"{name} v{version}: new schema version")
        elif before.versions[version] != now.versions[version]:
            found = changes(before.versions[version], now.versions[version])
            added = [c.field for c in found if c.kind == "added"]
            what = f"new optional field(s) {', '.join(map(repr, added))}" if added else None
            lines.append(f"{name} v{version}: {what or 'titles, descriptions or defaults changed'}")
        elif before.event_class != now.event_class:
            lines.append(f"{name}: the class is now {now.event_class}")
    return lines


def relock(
    recorded: SchemaLock,
    registry: EventRegistry,
    modules: tuple[str, ...],
    *,
    force: bool = False,
    source: str = "the schema lock",
) -> SchemaLock:
    """The lock to write: the current shapes, with the recorded older versions.

    Refuses (`IncompatibleSchema`) when the classes cannot read what is
    recorded, unless `force`: forcing records a break, which is only safe
    while no event of the changed types is stored anywhere.
    """
    problems = check(recorded, registry)
    if problems and not force:
        raise IncompatibleSchema(source, [str(p) for p in problems])
    return merge(recorded, current_lock(registry, modules))


def _check_type(
    name: str, locked: LockedType, cls: type[Event], registry: EventRegistry
) -> list[Problem]:
    now = cls.schema_version
    problems: list[Problem] = []
    if locked.latest > now:
        problems.append(
            Problem(
                name,
                locked.latest,
                f"the class is at schema_version {now}, below the recorded {locked.latest}:"
                f" events stored at {locked.latest} cannot be read; put schema_version back",
            )
        )
    older = [v for v in locked.versions if v < now]
    for step in range(min(older, default=now), now):
        if registry.upcaster(name, step) is None:
            problems.append(
                Problem(
                    name,
                    step,
                    f"schema_version is now {now} but no upcaster turns version {step} into"
                    f" {step + 1}: add @upcaster({cls.__name__}, from_version={step})",
                )
            )
    if now in locked.versions:
        for change in changes(locked.versions[now], event_schema(cls)):
            if change.kind not in COMPATIBLE:
                problems.append(Problem(name, now, _explain(change, now)))
    return problems


def _gone(name: str, locked: LockedType, recorded: SchemaLock, registry: EventRegistry) -> Problem:
    renamed = _same_fields_as(locked, recorded, registry)
    hint = (
        f"renamed to {renamed}? give that class event_type = {name!r}"
        if renamed
        else f"keep a class with event_type = {name!r} (or --import the module that has it)"
    )
    return Problem(
        name,
        locked.latest,
        f"no class is registered under this type name, so its stored events cannot be"
        f" decoded: {hint}",
    )


def _same_fields_as(locked: LockedType, recorded: SchemaLock, registry: EventRegistry) -> str:
    """The unrecorded type whose class has exactly the fields of `locked`'s latest shape."""
    for other, cls in app_types(registry).items():
        if other in recorded.events:
            continue
        if not changes(locked.versions[locked.latest], event_schema(cls)):
            return other
    return ""


def _explain(change: Change, version: int) -> str:
    field = repr(change.field)
    fix = f"raise schema_version with an @upcaster from {version}"
    if change.kind == "removed":
        return (
            f"field {field} ({change.old}) was removed: consumers still on the recorded class"
            f" need it; put it back, or {fix}"
        )
    if change.kind == "added_required":
        return (
            f"new field {field} ({change.new}) is required: events stored without it cannot"
            f" be read; give it a default, or {fix}"
        )
    if change.kind == "became_required":
        return (
            f"field {field} became required: events stored without it cannot be read;"
            f" give it back its default, or {fix}"
        )
    return (
        f"field {field} changed type from {change.old} to {change.new}: readers of either"
        f" shape may reject the other's values; {fix}"
    )
