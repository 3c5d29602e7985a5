"""`parse_uuid` and `uuid_int_of_bytes` take and refuse exactly what `UUID()`
does; the metadata column reads as a JSON parser would read it."""

from __future__ import annotations

import json
import time
import uuid

import orjson
from hypothesis import example, given
from hypothesis import strategies as st

from eventsource.events.codec import _decode_metadata
from eventsource.events.uuids import (
    parse_uuid,
    uuid7,
    uuid_from_hex,
    uuid_int_of_bytes,
    uuid_of_int,
)

HEX = "0123456789abcdefABCDEF"


def outcome(text: str) -> object:
    try:
        return uuid.UUID(text)
    except (ValueError, TypeError) as exc:
        return type(exc)


def parsed(text: str) -> object:
    try:
        return parse_uuid(text)
    except (ValueError, TypeError) as exc:
        return type(exc)


def parsed_from_bytes(text: str) -> object:
    try:
        return uuid_of_int(uuid_int_of_bytes(text.encode()))  # as the Kafka reader does
    except (ValueError, TypeError) as exc:
        return type(exc)


@given(
    st.uuids().map(str)
    | st.uuids().map(lambda u: u.hex)
    | st.uuids().map(lambda u: f"{{{u}}}")
    | st.uuids().map(lambda u: u.urn)
    | st.text(alphabet=HEX + "-+_ {}:urnid\u0661", max_size=40)
    | st.text(max_size=40)
)
@example("+" + "1" * 31)
@example(" " + "1" * 31)
@example("1_" + "1" * 30)
@example("\u0661" * 32)
@example("-" * 36)
@example("12345678-1234-1234-1234-1234567890ab")
def test_parse_uuid_agrees_with_the_standard_library(text: str) -> None:
    result = parsed(text)
    assert result == outcome(text)
    assert parsed_from_bytes(text) == result
    if isinstance(result, uuid.UUID):
        assert str(result) == str(uuid.UUID(text))
        assert result.is_safe == uuid.SafeUUID.unknown
        assert hash(result) == hash(uuid.UUID(text))


@given(st.uuids())
def test_uuid_from_hex_round_trips(value: uuid.UUID) -> None:
    assert uuid_from_hex(value.hex) == value


def metadata_outcome(text: str) -> object:
    """What reading the metadata column with a JSON parser gives."""
    try:
        meta = json.loads(text) if text else {}
        if not isinstance(meta, dict):
            return ValueError
        correlation, causation = meta.get("correlation_id"), meta.get("causation_id")
        return (
            uuid.UUID(correlation) if correlation is not None else None,
            uuid.UUID(causation) if causation is not None else None,
        )
    except (ValueError, TypeError, AttributeError) as exc:
        return ValueError if isinstance(exc, json.JSONDecodeError) else type(exc)


def metadata_read(text: str) -> object:
    try:
        return _decode_metadata(text)
    except (ValueError, TypeError, AttributeError) as exc:
        return ValueError if isinstance(exc, orjson.JSONDecodeError) else type(exc)


ID_TEXT = (
    st.uuids().map(str)
    | st.uuids().map(lambda u: str(u).upper())
    | st.text(alphabet=HEX + '-+_ \\"', min_size=34, max_size=38)
)


@given(
    st.builds(lambda c: json.dumps({"correlation_id": c}, separators=(",", ":")), ID_TEXT)
    | st.builds(
        lambda c, k: json.dumps({"correlation_id": c, "causation_id": k}, separators=(",", ":")),
        ID_TEXT,
        ID_TEXT,
    )
    | st.builds(lambda k: json.dumps({"causation_id": k}, separators=(",", ":")), ID_TEXT)
    | st.builds(lambda c: json.dumps({"correlation_id": c}), ID_TEXT)
    | st.sampled_from(["", "{}", "[]", "null"])
)
@example('{"correlation_id":"\\u0030' + "0" * 31 + '-0000-0000-0000"}')
def test_the_metadata_column_reads_as_a_json_parser_reads_it(text: str) -> None:
    assert metadata_read(text) == metadata_outcome(text)


@given(ID_TEXT, st.booleans())
@example("\\u0030" + "0" * 31 + "-0000-0000-0000", True)
@example("+" + "0" * 31 + "-0000-0000-0000", True)
def test_an_event_that_is_its_own_correlation_reads_the_same(correlation: str, own: bool) -> None:
    text = json.dumps({"correlation_id": correlation}, separators=(",", ":"))
    expected = metadata_outcome(text)
    parsed = isinstance(expected, tuple) and expected[0] is not None
    event_id = expected[0] if parsed and own else uuid.uuid4()
    try:
        read: object = _decode_metadata(text, event_id)
    except (ValueError, TypeError, AttributeError) as exc:
        read = ValueError if isinstance(exc, orjson.JSONDecodeError) else type(exc)
    assert read == expected


def test_new_event_ids_are_version_7_and_carry_the_time_they_were_made() -> None:
    before = time.time_ns() // 1_000_000
    made = uuid7()
    after = time.time_ns() // 1_000_000
    assert made.version == 7
    assert made.variant == uuid.RFC_4122
    assert before <= made.int >> 80 <= after
    assert uuid.UUID(str(made)) == made
    assert made.is_safe == uuid.SafeUUID.unknown


def test_new_event_ids_are_unique_and_grow_from_one_millisecond_to_the_next() -> None:
    ids = []
    for _ in range(5):
        ids += [uuid7() for _ in range(2000)]
        time.sleep(0.002)
    assert len(set(ids)) == len(ids)
    stamps = [u.int >> 80 for u in ids]
    assert stamps == sorted(stamps)
    by_millisecond: dict[int, list[uuid.UUID]] = {}
    for u in ids:
        by_millisecond.setdefault(u.int >> 80, []).append(u)
    firsts = [min(group) for _, group in sorted(by_millisecond.items())]
    assert firsts == sorted(firsts)
