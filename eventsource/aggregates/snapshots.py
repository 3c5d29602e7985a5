"""Turning an aggregate's state into a snapshot and back.

The state is the aggregate's annotated attributes; a pydantic model built
from those annotations serialises it, so snapshots round-trip the same types
events do (Decimal, aware datetimes, UUIDs, enums, nested models).
"""

from __future__ import annotations

import hashlib
import typing
from typing import Any

import pydantic

from eventsource.aggregates.base import Aggregate
from eventsource.errors import ConfigurationError

_INTERNAL = frozenset({"_es_id", "_es_version", "_es_pending"})


_models: dict[type[Aggregate], type[pydantic.BaseModel]] = {}
_fingerprints: dict[type[Aggregate], str] = {}


def _state_model(cls: type[Aggregate]) -> type[pydantic.BaseModel]:
    model = _models.get(cls)
    if model is None:
        model = _models[cls] = _build_state_model(cls)
    return model


def _build_state_model(cls: type[Aggregate]) -> type[pydantic.BaseModel]:
    try:
        hints = typing.get_type_hints(cls)
    except Exception as exc:
        raise ConfigurationError(
            f"cannot resolve the attribute annotations of {cls.__qualname__} for snapshots: {exc}"
        ) from exc
    fields: dict[str, Any] = {
        name: (hint, None)
        for name, hint in hints.items()
        if not name.startswith("_") and typing.get_origin(hint) is not typing.ClassVar
    }
    try:
        return pydantic.create_model(
            f"{cls.__name__}Snapshot",
            __config__=pydantic.ConfigDict(
                arbitrary_types_allowed=False,
                ser_json_bytes="base64",
                val_json_bytes="base64",
                ser_json_inf_nan="strings",  # as events do; "null" would not restore
            ),
            **fields,
        )
    except Exception as exc:
        raise ConfigurationError(
            f"{cls.__qualname__} has snapshots enabled, but its state cannot be serialised: {exc}"
        ) from exc


def check_no_personal_data(cls: type[Aggregate]) -> None:
    """Refuse snapshots of an aggregate that applies personal data.

    Its state holds the plaintext of sealed fields, and a snapshot would
    store it where forgetting the subject's key cannot reach it (deleting
    the row is not enough: databases keep deleted bytes in their files).
    Such an aggregate is rebuilt from its events, whose fields stay sealed.
    """
    personal = sorted(
        event.__name__
        for event in cls._handlers
        if event._es_sealing is not None and event._es_sealing.fields
    )
    if personal:
        raise ConfigurationError(
            f"{cls.__qualname__} applies personal data ({', '.join(personal)}), so it is"
            " never snapshotted: its state holds the plaintext, which forgetting the"
            " subject could not erase; remove snapshot_every"
        )


def fingerprint(cls: type[Aggregate]) -> str:
    """Changes whenever the state's shape or the class's `snapshot_version` does."""
    found = _fingerprints.get(cls)
    if found is None:
        model = _state_model(cls)
        shape = sorted((name, repr(f.annotation)) for name, f in model.model_fields.items())
        text = f"{cls.type_name}|{cls.snapshot_version}|{shape}"
        found = _fingerprints[cls] = hashlib.sha256(text.encode()).hexdigest()[:32]
    return found


def take(aggregate: Aggregate) -> str:
    """The aggregate's state as JSON."""
    cls = type(aggregate)
    model = _state_model(cls)
    state = {k: v for k, v in vars(aggregate).items() if k not in _INTERNAL}
    undeclared = sorted(set(state) - set(model.model_fields))
    if undeclared:
        raise ConfigurationError(
            f"{cls.__qualname__} sets attribute(s) {', '.join(undeclared)} that are not declared"
            " with a type annotation on the class; a snapshot would lose them"
        )
    snapshot = model.model_construct(_fields_set=set(state), **state)
    return snapshot.model_dump_json(exclude_unset=True, warnings="error")


def restore(cls: type[Aggregate], aggregate_id: str, version: int, state: str) -> Aggregate:
    """An aggregate at `version` rebuilt from a snapshot's JSON state."""
    model = _state_model(cls)
    snapshot = model.model_validate_json(state)
    aggregate: Aggregate = cls._blank(aggregate_id)
    for name in snapshot.model_fields_set:
        setattr(aggregate, name, getattr(snapshot, name))
    aggregate._es_version = version
    return aggregate
