"""Fuzzing the decoder: whatever is stored, the only failure is a DecodeError.

A DecodeError names the type, the stream and the version of the bad record;
any other exception escaping `decode` (or a hang in the parser) is a bug.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from eventsource import DecodeError, Event, upcaster
from eventsource.events import EventCodec, StoredEvent


class FuzzPlain(Event):
    event_type = "fuzz.plain"

    name: str
    amount: Decimal
    data: Any = None


class FuzzUpcast(Event):
    """Stored at schema 1 or 2, so that decoding also runs the upcast path."""

    event_type = "fuzz.upcast"
    schema_version = 3

    items: list[Any]


@upcaster(FuzzUpcast, from_version=1)
def _fuzz_v1(payload: dict[str, Any]) -> dict[str, Any]:
    return {"items": [payload.get("item")]}


@upcaster(FuzzUpcast, from_version=2)
def _fuzz_v2(payload: dict[str, Any]) -> dict[str, Any]:
    return {"items": list(payload["items"])}


STREAM = "fuzz_agg:f-1"


def record(
    payload: str,
    *,
    event_type: str = "fuzz.plain",
    schema_version: int = 1,
    version: int = 3,
    metadata: str = "{}",
) -> StoredEvent:
    return StoredEvent(
        position=10,
        stream_id=STREAM,
        aggregate_id="f-1",
        aggregate_type="fuzz_agg",
        version=version,
        event_type=event_type,
        schema_version=schema_version,
        event_id=UUID(int=7),
        occurred_at=datetime(2024, 1, 1, tzinfo=UTC),
        payload=payload,
        metadata=metadata,
    )


def decode_or_decode_error(codec: EventCodec, stored: StoredEvent) -> Event | DecodeError:
    """The decoded event, or the DecodeError, after checking that it names the record."""
    failure: DecodeError | None = None
    try:
        event = codec.decode(stored)
    except DecodeError as error:
        failure = error
    if failure is not None:
        assert failure.event_type == stored.event_type
        assert failure.stream_id == stored.stream_id
        assert failure.version == stored.version
        message = str(failure)
        assert repr(stored.event_type) in message
        assert repr(stored.stream_id) in message
        assert f"version={stored.version}" in message
        return failure
    # Anything returned is a whole event of the registered class.
    assert type(event).event_type == stored.event_type
    assert event.version == stored.version
    assert event.aggregate_id == "f-1"
    return event


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["name", "amount", "data", "items", "item", "version", "x"])
            | st.text(max_size=5),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)

payloads = st.one_of(
    st.text(),  # arbitrary text
    st.text(alphabet=st.characters(codec=None, categories=None)),  # lone surrogates too
    st.binary().map(lambda raw: raw.decode("utf-8", "surrogateescape")),  # arbitrary bytes
    st.binary().map(lambda raw: raw.decode("latin-1")),
    json_values.map(lambda value: json.dumps(value, allow_nan=True)),
    json_values.map(lambda value: json.dumps({"name": "n", "amount": "1", "data": value})),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    payload=payloads,
    event_type=st.sampled_from(["fuzz.plain", "fuzz.upcast", "fuzz.unknown"]) | st.text(),
    schema_version=st.sampled_from([1, 2, 3]) | st.integers(),
    version=st.integers(min_value=-(2**63), max_value=2**63),
    metadata=st.sampled_from(["{}", "", '{"correlation_id": null}'])
    | json_values.map(json.dumps)
    | st.text(),
)
@example(
    payload='{"name": "n", "amount": "1.50"}',
    event_type="fuzz.plain",
    schema_version=1,
    version=1,
    metadata="{}",
)
@example(payload='{"item": 1}', event_type="fuzz.upcast", schema_version=1, version=2, metadata="")
def test_arbitrary_records_decode_or_raise_only_decode_error(
    payload: str, event_type: str, schema_version: int, version: int, metadata: str
) -> None:
    stored = record(
        payload,
        event_type=event_type,
        schema_version=schema_version,
        version=version,
        metadata=metadata,
    )
    decode_or_decode_error(EventCodec(), stored)


def test_the_fuzz_examples_can_succeed() -> None:
    # The explicit examples above decode; the fuzzer is not only producing errors.
    plain = EventCodec().decode(record('{"name": "n", "amount": "1.50"}'))
    assert isinstance(plain, FuzzPlain)
    assert str(plain.amount) == "1.50"
    upcast = EventCodec().decode(record('{"item": 1}', event_type="fuzz.upcast"))
    assert isinstance(upcast, FuzzUpcast)
    assert upcast.items == [1]


DEPTH = 100_000


@pytest.mark.parametrize(
    ("event_type", "schema_version", "payload"),
    [
        ("fuzz.plain", 1, "[" * DEPTH + "]" * DEPTH),
        ("fuzz.plain", 1, '{"a":' * DEPTH + "1" + "}" * DEPTH),
        (
            "fuzz.plain",
            1,
            '{"name": "n", "amount": "1", "data": ' + "[" * DEPTH + "]" * DEPTH + "}",
        ),
        ("fuzz.plain", 1, '{"name": "n", "amount": "1", "data": ' + '{"a":' * DEPTH + "0"),
        ("fuzz.plain", 1, "[" * DEPTH),
        ("fuzz.upcast", 1, '{"item": ' + "[" * DEPTH + "]" * DEPTH + "}"),
        ("fuzz.upcast", 2, '{"items": ' + '{"a":' * DEPTH + "1" + "}" * DEPTH + "}"),
        ("fuzz.upcast", 3, '{"items": ' + "[" * DEPTH + "]" * DEPTH + "}"),
    ],
)
def test_deeply_nested_payloads_are_decode_errors(
    event_type: str, schema_version: int, payload: str
) -> None:
    stored = record(payload, event_type=event_type, schema_version=schema_version)
    result = decode_or_decode_error(EventCodec(), stored)
    assert isinstance(result, DecodeError)


def test_an_upcaster_building_a_deep_payload_is_a_decode_error() -> None:
    class FuzzDeepener(Event):
        event_type = "fuzz.deepener"
        schema_version = 2

        data: Any

    @upcaster(FuzzDeepener, from_version=1)
    def _deepen(payload: dict[str, Any]) -> dict[str, Any]:
        nested: Any = 0
        for _ in range(DEPTH):
            nested = [nested]
        return {"data": nested}

    stored = record("{}", event_type="fuzz.deepener", schema_version=1)
    assert isinstance(decode_or_decode_error(EventCodec(), stored), DecodeError)


LIMIT = 64


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(max_size=2 * LIMIT)
    | st.text(alphabet="aé€😀", max_size=2 * LIMIT)
    | st.binary(max_size=2 * LIMIT).map(lambda raw: raw.decode("utf-8", "surrogateescape"))
)
@example(text="a" * LIMIT)
@example(text="a" * (LIMIT + 1))
@example(text="é" * (LIMIT // 2 + 1))
def test_the_size_limit_counts_utf8_bytes(text: str) -> None:
    codec = EventCodec(max_event_bytes=LIMIT)
    stored = record(text)
    size = len(text.encode("utf-8", "surrogatepass"))
    result = decode_or_decode_error(codec, stored)
    rejected_for_size = isinstance(result, DecodeError) and "above the limit" in result.reason
    assert rejected_for_size == (size > LIMIT)
    if rejected_for_size:
        assert result.reason.startswith(f"payload of {size} bytes")  # type: ignore[union-attr]


def test_oversized_input_is_rejected_before_any_parser_sees_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed: list[str] = []
    real_loads = orjson.loads
    real_validator = FuzzUpcast.__pydantic_validator__

    def counting_loads(data: Any) -> Any:
        parsed.append("orjson.loads")
        return real_loads(data)

    class CountingValidator:
        def validate_json(self, data: Any, **kwargs: Any) -> Any:
            parsed.append("validate_json")
            return real_validator.validate_json(data, **kwargs)

    monkeypatch.setattr(orjson, "loads", counting_loads)  # the codec calls orjson.loads
    monkeypatch.setattr(FuzzUpcast, "__pydantic_validator__", CountingValidator())
    codec = EventCodec(max_event_bytes=1000)

    # The probes work: a payload within the limit reaches both parsers.
    codec.decode(record('{"item": 1}', event_type="fuzz.upcast", schema_version=1))
    assert parsed == ["orjson.loads", "validate_json"]
    parsed.clear()

    # Not JSON at all, and past the limit: refused for its size, unparsed.
    oversized = "{" + "x" * 2000
    for schema_version in (1, 3):
        stored = record(oversized, event_type="fuzz.upcast", schema_version=schema_version)
        with pytest.raises(DecodeError) as caught:
            codec.decode(stored)
        assert caught.value.reason == "payload of 2001 bytes is above the limit of 1000 bytes"
    assert parsed == []


def test_oversized_payload_of_an_unknown_type_is_refused_for_its_size() -> None:
    stored = record("x" * (1024 * 1024 + 1), event_type="fuzz.not_registered")
    with pytest.raises(DecodeError) as caught:
        EventCodec().decode(stored)
    assert "above the limit of 1048576 bytes" in caught.value.reason
    assert caught.value.event_type == "fuzz.not_registered"


@settings(max_examples=20, deadline=None)
@given(
    extra=st.integers(min_value=1, max_value=3 * 1024 * 1024),
    event_type=st.sampled_from(["fuzz.plain", "fuzz.upcast"]),
)
def test_oversized_payloads_of_any_size_give_only_decode_error(extra: int, event_type: str) -> None:
    payload = '{"name": "' + "n" * (1024 * 1024 + extra) + '", "amount": "1"}'
    result = decode_or_decode_error(EventCodec(), record(payload, event_type=event_type))
    assert isinstance(result, DecodeError)
    assert "above the limit" in result.reason
