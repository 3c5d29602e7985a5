"""The `Event` base class that domain events subclass."""

from __future__ import annotations

import inspect
import re
from datetime import UTC, datetime
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from eventsource.errors import ConfigurationError
from eventsource.events.personal import Sealing, sealing_of

NIL_UUID = UUID(int=0)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Filled in by the framework when an aggregate triggers the event or when it
# is decoded; a domain event's own fields must not reuse these names.
METADATA_FIELDS: frozenset[str] = frozenset(
    {
        "event_id",
        "aggregate_id",
        "aggregate_type",
        "version",
        "position",
        "occurred_at",
        "correlation_id",
        "causation_id",
    }
)

_TYPE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.:\-]{0,199}$")


class Event(BaseModel):
    """An immutable fact recorded by an aggregate.

    Subclass it with the event's own fields::

        class OrderPlaced(Event):
            customer_id: str
            total: Decimal

    The framework stamps the metadata fields (`event_id`, `aggregate_id`,
    `aggregate_type`, `version`, `position`, `occurred_at`, `correlation_id`,
    `causation_id`) when an aggregate triggers the event; until then they hold
    neutral values. `event_type` (default: the class name) is the stable name
    stored with the event; `schema_version` (default 1) is raised together with
    an upcaster when the fields change.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        ser_json_bytes="base64",
        val_json_bytes="base64",
        ser_json_inf_nan="strings",
        validate_default=False,
    )

    event_type: ClassVar[str] = "Event"
    schema_version: ClassVar[int] = 1
    # What the codec seals and opens (personal data fields); None for most
    # classes, so that decoding them costs one attribute look-up more.
    _es_sealing: ClassVar[Sealing | None] = None

    event_id: UUID = NIL_UUID
    aggregate_id: str = ""
    aggregate_type: str = ""
    version: int = 0
    position: int = 0
    occurred_at: datetime = EPOCH
    correlation_id: UUID | None = None
    causation_id: UUID | None = None

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        _check_declaration(cls)
        cls._es_sealing = sealing_of(cls)
        from eventsource.events.registry import default_registry

        default_registry.register(cls)

    @property
    def is_recorded(self) -> bool:
        """Whether an aggregate has triggered this event (its metadata is stamped)."""
        return self.version > 0


def _check_declaration(cls: type[Event]) -> None:
    if "event_type" not in cls.__dict__:
        cls.event_type = cls.__name__
    if not isinstance(cls.event_type, str) or not _TYPE_NAME.match(cls.event_type):
        raise ConfigurationError(
            f"{cls.__qualname__}.event_type must be a name of letters, digits and _.:-"
            f" starting with a letter, got {cls.event_type!r}"
        )
    if not isinstance(cls.schema_version, int) or cls.schema_version < 1:
        raise ConfigurationError(
            f"{cls.__qualname__}.schema_version must be a positive int, got {cls.schema_version!r}"
        )
    for name, annotation in inspect.get_annotations(cls).items():
        if name in METADATA_FIELDS:
            raise ConfigurationError(
                f"{cls.__qualname__} declares field {name!r} ({annotation}), which is reserved"
                f" for event metadata; rename it"
            )
