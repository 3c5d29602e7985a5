"""`parse_uuid` takes and refuses exactly what `UUID()` does."""

from __future__ import annotations

import uuid

from hypothesis import example, given
from hypothesis import strategies as st

from eventsource.events.uuids import parse_uuid, uuid_from_hex

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
    if isinstance(result, uuid.UUID):
        assert str(result) == str(uuid.UUID(text))
        assert result.is_safe == uuid.SafeUUID.unknown
        assert hash(result) == hash(uuid.UUID(text))


@given(st.uuids())
def test_uuid_from_hex_round_trips(value: uuid.UUID) -> None:
    assert uuid_from_hex(value.hex) == value
