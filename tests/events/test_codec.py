"""The codec: exact round trips, upcasting, and clear errors for bad stored data."""

from __future__ import annotations

import enum
import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from eventsource import (
    Aggregate,
    ConfigurationError,
    DecodeError,
    EncodeError,
    Event,
    EventTooLarge,
    UnknownEventType,
    on,
    upcaster,
)
from eventsource.events import METADATA_FIELDS, EventCodec, StoredEvent, default_registry


class CodecColour(enum.Enum):
    RED = "red"
    GREEN = "green"


class CodecPriority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class CodecAddress(BaseModel):
    street: str
    postcode: str | None = None
    geo: tuple[Decimal, Decimal] | None = None


class CodecLine(BaseModel):
    sku: str
    price: Decimal
    delivered_at: datetime | None = None
    address: CodecAddress


class CodecEverything(Event):
    event_type = "codec.everything"

    amount: Decimal
    when: datetime
    day: date
    ref: UUID
    colour: CodecColour
    priority: CodecPriority
    blob: bytes
    ratio: float
    count: int
    flag: bool
    note: str | None
    lines: list[CodecLine]
    tags: dict[str, list[int]]
    pair: tuple[str, Decimal]


class CodecText(Event):
    event_type = "codec.text"

    text: str


class CodecCounted(Event):
    event_type = "codec.counted"

    count: int


class CodecRenamed(Event):
    """Schema 1 had `name`; schema 2 called it `full_name`; schema 3 added `currency`."""

    event_type = "codec.renamed"
    schema_version = 3

    full_name: str
    currency: str


@upcaster(CodecRenamed, from_version=1)
def _renamed_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    payload = dict(payload)
    payload["full_name"] = payload.pop("name")
    return payload


@upcaster(CodecRenamed, from_version=2)
def _renamed_v2_to_v3(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "currency": "EUR"}


class CodecGapped(Event):
    """Schema 3, but only the upcaster from 1 to 2 exists."""

    event_type = "codec.gapped"
    schema_version = 3

    value: int


@upcaster(CodecGapped, from_version=1)
def _gapped_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return payload


class CodecBadUpcasts(Event):
    event_type = "codec.bad_upcasts"
    schema_version = 2

    value: int


@upcaster("codec.bad_upcasts", from_version=1)
def _bad_upcast(payload: dict[str, Any]) -> dict[str, Any]:
    if payload.get("mode") == "raise":
        raise KeyError("value")
    return ["not", "a", "dict"]  # type: ignore[return-value]


class CodecLedger(Aggregate, type_name="codec_ledger"):
    @on(CodecEverything, CodecText, CodecCounted, CodecRenamed)
    def _any(self, event: Event) -> None:
        pass


def recorded(event: Event, aggregate_id: str = "ledger-1") -> Event:
    """`event` as an aggregate records it (metadata stamped)."""
    ledger = CodecLedger(aggregate_id)
    ledger.trigger(event)
    return ledger.pending_events[0]


def stored(
    event_type: str, payload: str, *, schema_version: int = 1, version: int = 7
) -> StoredEvent:
    return StoredEvent(
        position=42,
        stream_id="codec_ledger:ledger-9",
        aggregate_id="ledger-9",
        aggregate_type="codec_ledger",
        version=version,
        event_type=event_type,
        schema_version=schema_version,
        event_id=uuid4(),
        occurred_at=datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
        payload=payload,
        metadata="{}",
    )


def everything(**overrides: Any) -> CodecEverything:
    values: dict[str, Any] = {
        "amount": Decimal("1.10"),
        "when": datetime(
            2024, 3, 31, 1, 30, 15, 123456, tzinfo=timezone(timedelta(hours=5, minutes=45))
        ),
        "day": date(1999, 12, 31),
        "ref": UUID("12345678-1234-5678-1234-567812345678"),
        "colour": CodecColour.GREEN,
        "priority": CodecPriority.HIGH,
        "blob": bytes(range(256)),
        "ratio": 0.1,
        "count": 2**70,
        "flag": False,
        "note": None,
        "lines": [
            CodecLine(
                sku="sku-ü",
                price=Decimal("19.990"),
                delivered_at=datetime(
                    2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=-3, minutes=-30))
                ),
                address=CodecAddress(
                    street="Rue d'Été 1", geo=(Decimal("48.8566"), Decimal("-0.00"))
                ),
            )
        ],
        "tags": {"": [], "ключ": [1, -1, 0]},
        "pair": ("x", Decimal("1E+3")),
    }
    values.update(overrides)
    return CodecEverything(**values)


# -- round trips ---------------------------------------------------------------


def test_every_field_type_round_trips_exactly() -> None:
    codec = EventCodec()
    original = recorded(everything())

    decoded = codec.decode(codec.encode(original))

    assert type(decoded) is CodecEverything
    assert decoded == original
    assert str(decoded.amount) == "1.10"  # Decimal("1.1") would compare equal
    assert decoded.when.utcoffset() == timedelta(hours=5, minutes=45)
    assert decoded.when.isoformat() == "2024-03-31T01:30:15.123456+05:45"
    assert decoded.colour is CodecColour.GREEN
    assert decoded.priority is CodecPriority.HIGH
    assert decoded.blob == bytes(range(256))
    assert decoded.count == 2**70
    line = decoded.lines[0]
    assert isinstance(line, CodecLine)
    assert str(line.price) == "19.990"
    assert line.delivered_at is not None
    assert line.delivered_at.utcoffset() == timedelta(hours=-3, minutes=-30)
    assert line.address.geo is not None
    assert [str(v) for v in line.address.geo] == ["48.8566", "-0.00"]
    assert str(decoded.pair[1]) == "1E+3"


def test_metadata_comes_from_the_record_not_the_payload() -> None:
    codec = EventCodec()
    original = recorded(CodecText(text="hello"), aggregate_id="meta-1")
    record = codec.encode(original)

    assert record.stream_id == "codec_ledger:meta-1"
    assert record.version == 1
    assert record.event_type == "codec.text"
    for name in METADATA_FIELDS:
        assert f'"{name}"' not in record.payload

    decoded = codec.decode(record._replace(position=99))
    assert decoded.event_id == original.event_id
    assert decoded.aggregate_id == "meta-1"
    assert decoded.aggregate_type == "codec_ledger"
    assert decoded.version == 1
    assert decoded.position == 99
    assert decoded.occurred_at == original.occurred_at
    assert decoded.occurred_at.tzinfo is not None
    assert decoded.correlation_id == original.event_id
    assert decoded.causation_id is None


def test_decoded_events_are_frozen() -> None:
    codec = EventCodec()
    decoded = codec.decode(codec.encode(recorded(CodecText(text="a"))))
    with pytest.raises(ValueError, match="frozen"):
        decoded.text = "b"  # type: ignore[attr-defined]


def test_float_specials_round_trip() -> None:
    codec = EventCodec()
    for ratio in (math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308):
        decoded = codec.decode(codec.encode(recorded(everything(ratio=ratio))))
        assert isinstance(decoded, CodecEverything)
        assert decoded.ratio == ratio
        assert math.copysign(1, decoded.ratio) == math.copysign(1, ratio)
    decoded = codec.decode(codec.encode(recorded(everything(ratio=math.nan))))
    assert isinstance(decoded, CodecEverything)
    assert math.isnan(decoded.ratio)


offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


@settings(max_examples=50, deadline=None)
@given(
    values=st.fixed_dictionaries(
        {
            "amount": st.decimals(allow_nan=False, allow_infinity=False),
            "when": st.datetimes(timezones=offsets),
            "ref": st.uuids(),
            "blob": st.binary(max_size=64),
            "ratio": st.floats(allow_nan=False),
            "count": st.integers(),
            "note": st.none() | st.text(),
            "tags": st.dictionaries(
                st.text(max_size=5), st.lists(st.integers(), max_size=3), max_size=4
            ),
            "colour": st.sampled_from(CodecColour),
        }
    )
)
def test_round_trip_property(values: dict[str, Any]) -> None:
    codec = EventCodec()
    original = recorded(everything(**values))
    decoded = codec.decode(codec.encode(original))
    assert isinstance(decoded, CodecEverything)
    assert decoded == original
    assert decoded.amount.as_tuple() == values["amount"].as_tuple()
    assert decoded.when.isoformat() == values["when"].isoformat()
    assert decoded.blob == values["blob"]
    assert decoded.note == values["note"]


# -- encoding ------------------------------------------------------------------


def test_an_event_not_triggered_by_an_aggregate_cannot_be_encoded() -> None:
    with pytest.raises(EncodeError, match=r"codec\.text has no aggregate metadata"):
        EventCodec().encode(CodecText(text="loose"))


def test_encoding_above_the_limit_is_refused_counting_utf8_bytes() -> None:
    codec = EventCodec(max_event_bytes=100)
    fits = recorded(CodecText(text="a" * 80))
    assert codec.decode(codec.encode(fits)) == fits

    # 60 characters but 120 bytes of text
    too_big = recorded(CodecText(text="é" * 60), aggregate_id="big-1")
    with pytest.raises(EventTooLarge) as caught:
        codec.encode(too_big)
    error = caught.value
    assert error.event_type == "codec.text"
    assert error.stream_id == "codec_ledger:big-1"
    assert error.size == len(b'{"text":""}') + 120
    assert error.limit == 100
    assert "max_event_bytes" in str(error)


# -- upcasting -----------------------------------------------------------------


def test_upcasters_chain_from_every_older_schema_to_the_current_one() -> None:
    codec = EventCodec()
    v1 = stored("codec.renamed", '{"name": "Ada"}', schema_version=1)
    v2 = stored("codec.renamed", '{"full_name": "Grace", "currency": "USD"}', schema_version=2)
    v2_without_currency = stored("codec.renamed", '{"full_name": "Alan"}', schema_version=2)
    v3 = stored("codec.renamed", '{"full_name": "Edsger", "currency": "GBP"}', schema_version=3)

    decoded = [codec.decode(r) for r in (v1, v2, v2_without_currency, v3)]

    assert [(e.full_name, e.currency) for e in decoded] == [  # type: ignore[attr-defined]
        ("Ada", "EUR"),
        ("Grace", "EUR"),  # the 2 -> 3 step only runs on schema 2 payloads, and it sets EUR
        ("Alan", "EUR"),
        ("Edsger", "GBP"),
    ]
    assert v1.payload == '{"name": "Ada"}'  # the stored record is untouched
    assert all(e.version == 7 and e.position == 42 for e in decoded)


def test_a_missing_upcaster_is_a_decode_error() -> None:
    codec = EventCodec()
    record = stored("codec.gapped", '{"value": 1}', schema_version=1, version=3)
    with pytest.raises(DecodeError) as caught:
        codec.decode(record)
    error = caught.value
    assert (error.event_type, error.stream_id, error.version) == (
        "codec.gapped",
        "codec_ledger:ledger-9",
        3,
    )
    assert "no upcaster registered from schema version 2 to 3" in str(error)
    assert "'codec.gapped'" in str(error)
    assert "'codec_ledger:ledger-9'" in str(error)


def test_a_schema_newer_than_the_code_is_a_decode_error() -> None:
    record = stored("codec.renamed", '{"full_name": "x", "currency": "y"}', schema_version=4)
    with pytest.raises(DecodeError, match="newer than the 3 this code knows"):
        EventCodec().decode(record)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ('{"value": 1, "mode": "raise"}', "KeyError"),
        ('{"value": 1}', "did not return a dict"),
        ('["a", "list"]', "not a JSON object"),
        ("{not json", "JSONDecodeError"),
    ],
)
def test_a_failing_upcast_is_a_decode_error(payload: str, reason: str) -> None:
    record = stored("codec.bad_upcasts", payload, schema_version=1)
    with pytest.raises(DecodeError, match=reason) as caught:
        EventCodec().decode(record)
    assert caught.value.event_type == "codec.bad_upcasts"


def test_upcaster_registration_errors() -> None:
    with pytest.raises(ConfigurationError, match="already registered"):
        upcaster(CodecRenamed, from_version=1)(lambda payload: payload)
    with pytest.raises(ConfigurationError, match="at least 1"):
        upcaster(CodecRenamed, from_version=0)
    # Registering the very same function again is harmless.
    upcaster(CodecRenamed, from_version=1)(_renamed_v1_to_v2)


# -- bad stored data -----------------------------------------------------------


def test_an_unknown_type_names_type_stream_and_version() -> None:
    record = stored("codec.never_defined", '{"x": 1}', version=12)
    with pytest.raises(UnknownEventType) as caught:
        EventCodec().decode(record)
    error = caught.value
    assert isinstance(error, DecodeError)
    assert (error.event_type, error.stream_id, error.version) == (
        "codec.never_defined",
        "codec_ledger:ledger-9",
        12,
    )
    message = str(error)
    assert "'codec.never_defined'" in message
    assert "'codec_ledger:ledger-9'" in message
    assert "version=12" in message


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("{}", "count: Field required"),
        ('{"count": "many"}', "count: Input should be a valid integer"),
        ('{"count": 1.5}', "count: Input should be a valid integer"),
        ("[1]", "Input should be an object"),
        ('{"count": 1', "Invalid JSON"),
        ("", "Invalid JSON"),
        ('{"count": 1, "version": "x"}', "version: Input should be a valid integer"),
    ],
)
def test_a_payload_failing_validation_is_a_decode_error(payload: str, reason: str) -> None:
    record = stored("codec.counted", payload, version=5)
    with pytest.raises(DecodeError) as caught:
        EventCodec().decode(record)
    error = caught.value
    assert reason in error.reason
    assert (error.event_type, error.stream_id, error.version) == (
        "codec.counted",
        "codec_ledger:ledger-9",
        5,
    )


def test_validation_messages_stay_short_for_hostile_payloads() -> None:
    fields = ", ".join(f'"f{i}": {i}' for i in range(2000))
    payload = '{"count": "' + "x" * 5000 + '", ' + fields + "}"
    with pytest.raises(DecodeError) as caught:
        EventCodec().decode(stored("codec.counted", payload))
    assert "count: Input should be a valid integer" in str(caught.value)
    assert len(str(caught.value)) < 1000


def test_fields_a_consumer_does_not_know_are_ignored_when_decoding() -> None:
    # A producer added an optional field and deployed first: older consumers
    # read its events and go on (forward compatibility).
    record = stored("codec.counted", '{"count": 3, "lot": "new-field", "more": {"a": [1]}}')
    decoded = EventCodec().decode(record)
    assert decoded.count == 3  # type: ignore[attr-defined]
    assert "lot" not in decoded.__dict__
    assert decoded.model_dump(exclude=set(METADATA_FIELDS)) == {"count": 3}


def test_events_built_in_code_stay_strict() -> None:
    cls = EventCodec().registry.resolve("codec.counted")
    assert cls is not None
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        cls(count=1, lot="typo")


@pytest.mark.parametrize(
    "metadata",
    ["not json", "[]", '{"correlation_id": "not-a-uuid"}', '{"causation_id": 12}'],
)
def test_corrupt_metadata_is_a_decode_error(metadata: str) -> None:
    record = stored("codec.counted", '{"count": 1}')._replace(metadata=metadata)
    with pytest.raises(DecodeError) as caught:
        EventCodec().decode(record)
    assert caught.value.stream_id == "codec_ledger:ledger-9"


def test_payload_cannot_override_the_metadata_columns() -> None:
    record = stored("codec.counted", '{"count": 1, "version": 99, "aggregate_id": "forged"}')
    decoded = EventCodec().decode(record)
    assert (decoded.version, decoded.aggregate_id) == (7, "ledger-9")


# -- declarations --------------------------------------------------------------


@pytest.mark.parametrize("field", sorted(METADATA_FIELDS))
def test_reserved_metadata_field_names_are_rejected_at_class_definition(field: str) -> None:
    name = f"codec.reserved_{field}"
    with pytest.raises(ConfigurationError, match=f"declares field '{field}'.*reserved"):
        type(
            "CodecReserved",
            (Event,),
            {"__annotations__": {field: str}, "event_type": name, "__module__": __name__},
        )
    assert default_registry.resolve(name) is None


@pytest.mark.parametrize("event_type", ["", "1st", "has space", "x" * 201, "é"])
def test_invalid_event_type_names_are_rejected(event_type: str) -> None:
    with pytest.raises(ConfigurationError, match="event_type must be a name"):
        type("CodecBadName", (Event,), {"event_type": event_type, "__module__": __name__})


def test_schema_version_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="schema_version must be a positive int"):
        type(
            "CodecBadSchema",
            (Event,),
            {"event_type": "codec.bad_schema", "schema_version": 0, "__module__": __name__},
        )


def test_the_type_name_defaults_to_the_class_name() -> None:
    class CodecDefaultNamed(Event):
        pass

    assert CodecDefaultNamed.event_type == "CodecDefaultNamed"
    assert default_registry.resolve("CodecDefaultNamed") is CodecDefaultNamed


def test_a_type_name_clash_between_modules_is_an_error() -> None:
    with pytest.raises(ConfigurationError) as caught:

        class CodecImpostor(Event):
            __module__ = "another.package.events"
            event_type = "codec.text"

            text: str

    message = str(caught.value)
    assert "'codec.text' is already used by tests.events.test_codec.CodecText" in message
    assert "another.package.events" in message
    assert default_registry.resolve("codec.text") is CodecText


def test_a_type_name_clash_within_one_module_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="already used"):

        class CodecText(Event):  # a different qualname: defined inside this function
            event_type = "codec.text"

            text: str

    assert default_registry.resolve("codec.text") is globals()["CodecText"]


def test_redefining_the_same_class_replaces_it() -> None:
    def define() -> type[Event]:
        class CodecReloaded(Event):
            event_type = "codec.reloaded"

            value: int

        return CodecReloaded

    first, second = define(), define()  # as when a module is re-executed
    assert first is not second
    assert default_registry.resolve("codec.reloaded") is second
