"""The one bridge between domain events and their stored bytes."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import orjson
import pydantic
import pydantic_core

from eventsource.errors import (
    DecodeError,
    EncodeError,
    EventTooLarge,
    StoreError,
    UnknownEventType,
)
from eventsource.events.base import METADATA_FIELDS, Event
from eventsource.events.personal import (
    PREFIX,
    KeyRing,
    PersonalField,
    SealError,
    Sealing,
    check_subject,
    open_sealed,
    parse,
    seal,
)
from eventsource.events.records import SELF_CORRELATED, StoredEvent
from eventsource.events.registry import EventRegistry, default_registry
from eventsource.events.uuids import parse_uuid

DEFAULT_MAX_EVENT_BYTES = 1024 * 1024
_new_tuple = tuple.__new__
_EXCLUDE: set[str] = set(METADATA_FIELDS)


class EventCodec:
    """Encodes recorded events into `StoredEvent`s and decodes them back.

    Decoding is strict: an unknown type, a payload that fails validation,
    bytes that are not JSON, or input above `max_event_bytes` raise
    `DecodeError` naming the type, stream and version; a half-built event is
    never returned.

    Fields marked `PersonalData` are sealed with their subject's key from
    `keys` (a store's codec: the store's keys) and opened on decode; a value
    whose key is deleted decodes to its placeholder. Without `keys`, the
    codec seals with keys held in memory and opens values of other contexts
    through their key tables (`EVENTSOURCE_KEYS`, `EVENTSOURCE_STORES`).
    """

    def __init__(
        self,
        registry: EventRegistry | None = None,
        *,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        keys: KeyRing | None = None,
    ) -> None:
        self.registry = registry or default_registry
        self.max_event_bytes = max_event_bytes
        self._keys = keys
        # The registry's own lookup, bound once: a C call per event read.
        self._class_named = self.registry.lookup()
        # The events of one command share their metadata: parse it once.
        self._last_metadata: tuple[str, tuple[UUID | None, UUID | None]] = ("{}", (None, None))

    def encode(self, event: Event) -> StoredEvent:
        """The stored form of an event that an aggregate has triggered."""
        # This runs for every event saved: the fields are read from the
        # event's __dict__ once, and the record is built as the tuple itself.
        fields = event.__dict__
        aggregate_id = fields["aggregate_id"]
        aggregate_type = fields["aggregate_type"]
        version = fields["version"]
        cls = type(event)
        if version <= 0 or not aggregate_id:
            raise EncodeError(
                f"{cls.event_type} has no aggregate metadata; events are stored by"
                " triggering them on an aggregate and saving it through a Repository"
            )
        stream_id = f"{aggregate_type}:{aggregate_id}"  # `stream_id_for`, inlined
        try:
            # The class's serializer directly: `model_dump_json` adds a Python-level call.
            payload = cls.__pydantic_serializer__.to_json(event, exclude=_EXCLUDE).decode()
        except (pydantic_core.PydanticSerializationError, ValueError, TypeError) as exc:
            raise EncodeError(
                f"cannot serialise {cls.event_type} for stream {stream_id!r}: {exc}"
            ) from exc
        sealing = cls._es_sealing
        if sealing is not None and sealing.fields:
            payload = self._seal(event, sealing.fields, payload, stream_id)
        if not payload.isascii() or len(payload) > self.max_event_bytes:
            size = _utf8_size(payload)
            if size > self.max_event_bytes:
                raise EventTooLarge(
                    event_type=cls.event_type,
                    stream_id=stream_id,
                    size=size,
                    limit=self.max_event_bytes,
                )
        return _new_tuple(
            StoredEvent,
            (
                fields["position"],
                stream_id,
                aggregate_id,
                aggregate_type,
                version,
                cls.event_type,
                cls.schema_version,
                fields["event_id"],
                fields["occurred_at"],
                payload,
                _encode_metadata(fields["correlation_id"], fields["causation_id"]),
            ),
        )

    def decode(self, record: StoredEvent) -> Event:
        """The domain event a stored record holds, upcast to its current schema."""
        try:
            # This runs for every event read, in one frame: the record is unpacked
            # once rather than read field by field, and the cheap cases are tested inline.
            (
                position,
                stream_id,
                aggregate_id,
                aggregate_type,
                version,
                event_type,
                schema_version,
                event_id,
                occurred_at,
                payload,
                metadata,
            ) = record
            # 1. Refuse oversized input before any parser sees it (the limit is in UTF-8 bytes).
            if not payload.isascii() or len(payload) > self.max_event_bytes:
                size = _utf8_size(payload)
                if size > self.max_event_bytes:
                    raise self._error(
                        record,
                        f"payload of {size} bytes is above the limit of"
                        f" {self.max_event_bytes} bytes",
                    )
            # 2. Find the class; an unknown name is its own error so callers can park it.
            cls = self._class_named(event_type)
            if cls is None:
                raise UnknownEventType(
                    "no event class is registered under this type name",
                    event_type=event_type,
                    stream_id=stream_id,
                    version=version,
                )
            # 3. Bring older payloads up to the class's schema; never rewrite the row.
            json: str | bytes = payload
            if schema_version != cls.schema_version:
                json = self._upcast(record, cls)
            # Personal data is opened before validation, as if stored in the clear.
            sealing = cls._es_sealing
            if sealing is not None:
                json = self._open(record, sealing, json)
            # 4. Validate the payload with the class's own JSON rules (its validator
            #    directly: `model_validate_json` adds a Python-level call per event).
            #    Fields this class does not know are ignored: a producer may add an
            #    optional field before its consumers upgrade (events built in code
            #    stay strict).
            try:
                event: Event = cls.__pydantic_validator__.validate_json(json, extra="ignore")
            except pydantic.ValidationError as exc:
                raise self._error(record, _summarise(exc)) from exc
            # 5. Stamp the metadata from the trusted columns, as `stamp` does,
            #    spelled out because it runs for every event read.
            ids: tuple[UUID | None, UUID | None]
            if SELF_CORRELATED.pop(metadata, None) is event_id:
                ids = (event_id, None)
            else:
                last_text, ids = self._last_metadata
                if metadata != last_text:
                    ids = _decode_metadata(metadata, event_id)
                    self._last_metadata = (metadata, ids)
            fields = event.__dict__
            fields["event_id"] = event_id
            fields["aggregate_id"] = aggregate_id
            fields["aggregate_type"] = aggregate_type
            fields["version"] = version
            fields["position"] = position
            fields["occurred_at"] = occurred_at
            fields["correlation_id"], fields["causation_id"] = ids
            event.__pydantic_fields_set__.update(METADATA_FIELDS)
            return event
        except (DecodeError, StoreError):
            raise  # a key database that is away is not bad data: callers retry
        except Exception as exc:  # a decoding boundary: anything else is bad data too
            raise self._error(record, f"{type(exc).__name__}: {exc}") from exc

    @property
    def keys(self) -> KeyRing:
        """Where personal data's keys come from (see the class docstring)."""
        if self._keys is None:
            # Only a codec that meets personal data without a store gets here;
            # the store's modules are imported then, not by every codec.
            from eventsource.store.keys import LocalKeys

            self._keys = LocalKeys()
        return self._keys

    def _seal(
        self, event: Event, fields: tuple[PersonalField, ...], payload: str, stream_id: str
    ) -> str:
        """`payload` with each personal field's value sealed with its subject's key."""
        data = orjson.loads(payload)
        values = event.__dict__
        keys = self.keys
        for field in fields:
            value = data.get(field.name)
            if value is None:
                continue  # nothing to hide; None stays readable as None
            subject = values[field.subject]
            problem = check_subject(subject)
            if problem is not None:
                raise EncodeError(
                    f"{type(event).event_type} for stream {stream_id!r}: the subject of"
                    f" {field.name} ({field.subject}) {problem}"
                )
            data[field.name] = seal(keys.sealing_key(subject), orjson.dumps(value))
        return orjson.dumps(data).decode()

    def _open(self, record: StoredEvent, sealing: Sealing, json: str | bytes) -> str | bytes:
        """The payload with personal fields opened, or their placeholders once forgotten."""
        if sealing.notice:
            self.keys.forgotten(record.aggregate_id)
            return json
        data = orjson.loads(json)
        if not isinstance(data, dict):
            raise self._error(record, "payload is not a JSON object")
        keys = self.keys
        for field in sealing.fields:
            value = data.get(field.name)
            if not (isinstance(value, str) and value.startswith(PREFIX)):
                continue  # None, or recorded before the field was marked
            try:
                header, context, key_id, body = parse(value)
                cipher = keys.opening_key(context, key_id)
                if cipher is None:
                    data[field.name] = field.placeholder
                else:
                    data[field.name] = orjson.loads(open_sealed(cipher, header, body))
            except SealError as exc:
                raise self._error(record, f"{field.name}: {exc}") from None
        return orjson.dumps(data)

    def _upcast(self, record: StoredEvent, cls: type[Event]) -> bytes:
        if record.schema_version > cls.schema_version:
            raise self._error(
                record,
                f"stored at schema version {record.schema_version}, newer than the"
                f" {cls.schema_version} this code knows; deploy the newer event class",
            )
        data = orjson.loads(record.payload)
        if not isinstance(data, dict):
            raise self._error(record, "payload is not a JSON object")
        for version in range(record.schema_version, cls.schema_version):
            step = self.registry.upcaster(record.event_type, version)
            if step is None:
                raise self._error(
                    record,
                    f"no upcaster registered from schema version {version} to {version + 1}",
                )
            data = step(data)
            if not isinstance(data, dict):
                raise self._error(
                    record, f"the upcaster from schema version {version} did not return a dict"
                )
        return orjson.dumps(data)

    def _error(self, record: StoredEvent, reason: str) -> DecodeError:
        return DecodeError(
            reason,
            event_type=record.event_type,
            stream_id=record.stream_id,
            version=record.version,
        )


def stamp(event: Event, **metadata: Any) -> None:
    """Write metadata into a freshly built event.

    Only for events no one else holds yet (just decoded, or just copied by
    `trigger`): events are frozen for everyone else.
    """
    event.__dict__.update(metadata)
    event.__pydantic_fields_set__.update(metadata)


def _utf8_size(text: str) -> int:
    """The size of `text` in UTF-8 (lone surrogates counted as three bytes, not an error)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _encode_metadata(correlation_id: UUID | None, causation_id: UUID | None) -> str:
    # orjson writes a UUID in the same canonical form as str(uuid), without
    # the Python-level formatting; `default=str` covers anything else.
    if causation_id is None:
        if correlation_id is None:
            return "{}"
        return orjson.dumps({"correlation_id": correlation_id}, default=str).decode()
    meta: dict[str, UUID] = {}
    if correlation_id is not None:
        meta["correlation_id"] = correlation_id
    meta["causation_id"] = causation_id
    return orjson.dumps(meta, default=str).decode()


_CORRELATION = '{"correlation_id":"'
_THEN_CAUSATION = '","causation_id":"'


def metadata_ids(text: str) -> tuple[str | None, str | None]:
    """The correlation and causation ids in a record's metadata, as text."""
    if text in ("", "{}"):
        return None, None
    # The two shapes `_encode_metadata` writes, sliced rather than parsed:
    # {"correlation_id":"<36>"} and {"correlation_id":"<36>","causation_id":"<36>"}.
    if text.startswith(_CORRELATION) and text.endswith('"}') and "\\" not in text:
        if len(text) == 57:
            return text[19:55], None
        if len(text) == 111 and text[55:73] == _THEN_CAUSATION:
            return text[19:55], text[73:109]
    meta = orjson.loads(text)
    if not isinstance(meta, dict):
        raise ValueError("metadata is not a JSON object")
    correlation = meta.get("correlation_id")
    causation = meta.get("causation_id")
    return (
        None if correlation is None else str(correlation),
        None if causation is None else str(causation),
    )


def _decode_metadata(text: str, event_id: UUID | None = None) -> tuple[UUID | None, UUID | None]:
    # An event that no other event caused is its own correlation id (see
    # `Aggregate.trigger`): most events read. Comparing the digits as an
    # integer is cheaper than building a second UUID of the same value, and
    # `int(digits, 16)` is what `parse_uuid` (and `UUID()`) would compute.
    if (
        event_id is not None
        and len(text) == 57
        and text.startswith(_CORRELATION)
        and text.endswith('"}')
        and "\\" not in text
    ):
        digits = text[19:55].replace("-", "")
        try:
            same = len(digits) == 32 and digits.isascii() and int(digits, 16) == event_id.int
        except ValueError:
            same = False
        if same:
            return event_id, None
    correlation, causation = metadata_ids(text)
    return (
        parse_uuid(correlation) if correlation is not None else None,
        parse_uuid(causation) if causation is not None else None,
    )


def _summarise(exc: pydantic.ValidationError) -> str:
    # Keep the message short: a hostile payload must not produce megabytes of text.
    errors = exc.errors(include_input=False, include_url=False)
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in errors[:5]]
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return "payload failed validation: " + "; ".join(parts) + more
