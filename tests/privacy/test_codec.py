"""Sealing personal data in the codec: what is accepted, stored, and read back."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import orjson
import pytest
from pydantic import Field

from eventsource import FORGOTTEN, ConfigurationError, DecodeError, EncodeError, Event, PersonalData
from eventsource.events.codec import EventCodec, stamp
from eventsource.events.registry import upcaster
from eventsource.events.uuids import uuid7
from tests.privacy.domain import Home, MemberJoined, NoteLeft


def recorded(event: Event, aggregate_id: str = "m-1", version: int = 1) -> Event:
    copy = event.model_copy()
    event_id = uuid7()
    stamp(
        copy,
        event_id=event_id,
        aggregate_id=aggregate_id,
        aggregate_type="member",
        version=version,
        position=0,
        occurred_at=datetime.now(UTC),
        correlation_id=event_id,
        causation_id=None,
    )
    return copy


JOINED = MemberJoined(name="Ada Lovelace", home=Home(street="12 St James", city="London"), plan="x")


def test_personal_fields_are_stored_sealed_and_read_back_in_the_clear() -> None:
    codec = EventCodec()
    record = codec.encode(recorded(JOINED))
    payload = orjson.loads(record.payload)
    assert payload["plan"] == "x"
    for field in ("name", "home"):
        assert payload[field].startswith("pd1:~local:")
    for plaintext in ("Ada", "Lovelace", "St James", "London", "street"):
        assert plaintext not in record.payload
    decoded = codec.decode(record)
    assert (decoded.name, decoded.home, decoded.plan) == ("Ada Lovelace", JOINED.home, "x")


def test_each_subject_has_its_own_key_and_each_value_its_own_nonce() -> None:
    codec = EventCodec()
    one = orjson.loads(codec.encode(recorded(JOINED, "m-1")).payload)
    again = orjson.loads(codec.encode(recorded(JOINED, "m-1", version=2)).payload)
    other = orjson.loads(codec.encode(recorded(JOINED, "m-2")).payload)
    key_of = lambda sealed: sealed.split(":")[2]  # noqa: E731
    assert key_of(one["name"]) == key_of(again["name"]) != key_of(other["name"])
    assert one["name"] != again["name"]  # same plaintext, new nonce


def test_the_subject_may_be_another_field() -> None:
    codec = EventCodec()
    note = NoteLeft(author_id="m-7", text="hello from Ada")
    on_board = orjson.loads(codec.encode(recorded(note, "board-1")).payload)
    by_member = orjson.loads(codec.encode(recorded(JOINED, "m-7")).payload)
    assert on_board["author_id"] == "m-7"
    assert on_board["text"].split(":")[2] == by_member["name"].split(":")[2]


def test_a_forgotten_subject_reads_as_the_placeholder() -> None:
    codec = EventCodec()
    record = codec.encode(recorded(JOINED))
    codec.keys.forgotten("m-1")  # the in-memory ring drops the key, as forget does
    decoded = codec.decode(record)
    assert (decoded.name, decoded.home, decoded.plan) == (FORGOTTEN, None, "x")


def test_none_stays_none_and_values_recorded_before_the_mark_read_as_they_are() -> None:
    codec = EventCodec()
    record = codec.encode(recorded(MemberJoined(name="Ada", home=None, plan="x")))
    assert orjson.loads(record.payload)["home"] is None
    assert codec.decode(record).home is None
    legacy = record._replace(payload='{"name":"Grace","home":null,"plan":"y"}')
    assert codec.decode(legacy).name == "Grace"


def test_a_tampered_sealed_value_is_a_decode_error_not_a_placeholder() -> None:
    codec = EventCodec()
    record = codec.encode(recorded(JOINED))
    payload = orjson.loads(record.payload)
    sealed = payload["name"]
    payload["name"] = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(DecodeError, match="name: the sealed value does not open"):
        codec.decode(record._replace(payload=orjson.dumps(payload).decode()))
    payload["name"] = "pd1:~local:nonsense"
    with pytest.raises(DecodeError, match="name: malformed sealed value"):
        codec.decode(record._replace(payload=orjson.dumps(payload).decode()))


def test_upcasters_see_sealed_values() -> None:
    seen: list[dict[str, Any]] = []

    class Renamed(Event):
        event_type = "test.privacy.Renamed"
        schema_version = 2
        full_name: Annotated[str, PersonalData()]

    @upcaster("test.privacy.Renamed", from_version=1)
    def _rename(payload: dict[str, Any]) -> dict[str, Any]:
        seen.append(payload)
        return {"full_name": payload["name"]}

    codec = EventCodec()
    record = codec.encode(recorded(Renamed(full_name="Ada Lovelace")))
    old = record._replace(
        schema_version=1,
        payload=orjson.dumps({"name": orjson.loads(record.payload)["full_name"]}).decode(),
    )
    assert codec.decode(old).full_name == "Ada Lovelace"
    assert seen[0]["name"].startswith("pd1:")


def test_a_subject_must_be_a_usable_id() -> None:
    codec = EventCodec()
    with pytest.raises(EncodeError, match=r"subject of text \(author_id\) is empty"):
        codec.encode(recorded(NoteLeft(author_id=" ", text="hi")))


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        (Annotated[int, PersonalData()], "must be a `str`"),
        (Annotated[Decimal, PersonalData()], "must be a `str`"),
        (Annotated[str, Field(max_length=5), PersonalData()], "takes no constraints"),
        (
            Annotated[str, PersonalData(subject="nowhere")],
            "its subject 'nowhere' must be a `str` field",
        ),
        (
            Annotated[str, PersonalData(subject="count")],
            "its subject 'count' must be a `str` field",
        ),
        (Annotated[str, PersonalData(subject="secret")], "is personal data itself"),
        (Annotated[str, PersonalData(), PersonalData()], "marked PersonalData twice"),
    ],
)
def test_declarations_that_could_not_be_forgotten_are_refused(
    annotation: Any, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        type(
            "Refused",
            (Event,),
            {
                "__annotations__": {
                    "field": annotation,
                    "count": int,
                    "secret": Annotated[str, PersonalData()],
                },
                "__module__": __name__,
                "event_type": "test.privacy.Refused",
            },
        )


def test_optional_fields_of_any_type_are_accepted() -> None:
    class Accepted(Event):
        event_type = "test.privacy.Accepted"
        amount: Annotated[Decimal | None, PersonalData()] = None
        tags: Annotated[list[str] | None, PersonalData()] = None
        name: Annotated[str, PersonalData()]

    codec = EventCodec()
    event = Accepted(amount=Decimal("1.50"), tags=["a"], name="Ada")
    decoded = codec.decode(codec.encode(recorded(event)))
    assert (decoded.amount, decoded.tags, decoded.name) == (Decimal("1.50"), ["a"], "Ada")


def test_types_without_personal_data_take_the_plain_path() -> None:
    class Plain(Event):
        event_type = "test.privacy.Plain"
        name: str

    assert Plain._es_sealing is None
    assert MemberJoined._es_sealing is not None
    codec = EventCodec()
    record = codec.encode(recorded(Plain(name="Ada")))
    assert record.payload == '{"name":"Ada"}'
    assert codec._keys is None  # no key ring was even built
