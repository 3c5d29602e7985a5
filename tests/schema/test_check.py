"""The schema check on its API: every kind of breaking change is reported, in one line
that names the type, the schema version, the field and the fix; compatible ones pass."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import uuid4

import pytest
from pydantic import BaseModel, Field

from eventsource import Event, StoredEvent
from eventsource.errors import ConfigurationError, DecodeError, IncompatibleSchema
from eventsource.events.codec import EventCodec
from eventsource.schema import SchemaLock, check, current_lock, relock, unrecorded
from eventsource.schema.lock import read_lock, write_lock
from tests.schema.shapes import registry, shape


class Line(BaseModel):
    sku: str
    quantity: int


class WiderLine(BaseModel):
    sku: str
    quantity: int
    note: str = ""


class FloatLine(BaseModel):
    sku: str
    quantity: float


class Tree(BaseModel):
    label: str
    children: list[Tree] = []


def lock_of(*classes: type[Event]) -> SchemaLock:
    return current_lock(registry(*classes), ("app.events",))


def problems(before: SchemaLock, *classes: type[Event], **kw: Any) -> list[str]:
    return [str(p) for p in check(before, registry(*classes, **kw))]


# -- breaking changes ------------------------------------------------------------------


def test_a_removed_field() -> None:
    before = lock_of(shape("chk.removed", 1, name=str, total=int))
    assert problems(before, shape("chk.removed", 1, name=str)) == [
        "chk.removed v1: field 'total' (integer) was removed: consumers still on the recorded"
        " class need it; put it back, or raise schema_version with an @upcaster from 1"
    ]


def test_a_removed_optional_field_is_breaking_too() -> None:
    before = lock_of(shape("chk.removed_opt", 1, name=str, note=(str, "")))
    [line] = problems(before, shape("chk.removed_opt", 1, name=str))
    assert line.startswith("chk.removed_opt v1: field 'note' (string) was removed")


@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        (int, str, "from integer to string"),
        (Decimal, float, "from number | string to number"),
        (str, str | None, "from string to string | null"),  # widened: old readers reject None
        (Literal["a", "b"], Literal["a", "b", "c"], 'from one of "a", "b" to one of "a", "b", "c"'),
        (list[int], list[str], "from list[integer] to list[string]"),
        (dict[str, int], dict[str, str], "from dict[str, integer] to dict[str, string]"),
        (str, Line, "from string to Line"),
        (str, (str, Field(max_length=10)), "from string to string (maxLength=10)"),
    ],
    ids=["int-str", "decimal-float", "nullable", "enum", "list", "dict", "model", "constraint"],
)
def test_a_retyped_field(old: Any, new: Any, said: str) -> None:
    before = lock_of(shape("chk.retyped", 1, value=old))
    assert problems(before, shape("chk.retyped", 1, value=new)) == [
        f"chk.retyped v1: field 'value' changed type {said}: readers of either shape may"
        " reject the other's values; raise schema_version with an @upcaster from 1"
    ]


def test_a_field_retyped_inside_a_nested_model_is_named_by_its_path() -> None:
    before = lock_of(shape("chk.nested", 1, lines=list[Line]))
    [line] = problems(before, shape("chk.nested", 1, lines=list[FloatLine]))
    assert line.startswith(
        "chk.nested v1: field 'lines[].quantity' changed type from integer to number:"
    )


def test_a_new_required_field() -> None:
    before = lock_of(shape("chk.required", 1, name=str))
    assert problems(before, shape("chk.required", 1, name=str, currency=str)) == [
        "chk.required v1: new field 'currency' (string) is required: events stored without it"
        " cannot be read; give it a default, or raise schema_version with an @upcaster from 1"
    ]


def test_an_optional_field_made_required() -> None:
    before = lock_of(shape("chk.made_required", 1, note=(str, "")))
    assert problems(before, shape("chk.made_required", 1, note=str)) == [
        "chk.made_required v1: field 'note' became required: events stored without it cannot"
        " be read; give it back its default, or raise schema_version with an @upcaster from 1"
    ]


def test_a_renamed_type_is_gone_and_the_new_name_is_suggested() -> None:
    before = lock_of(shape("chk.OrderPlaced", 1, total=int))
    assert problems(before, shape("chk.PlacedOrder", 1, total=int)) == [
        "chk.OrderPlaced v1: no class is registered under this type name, so its stored events"
        " cannot be decoded: renamed to chk.PlacedOrder? give that class"
        " event_type = 'chk.OrderPlaced'"
    ]


def test_a_removed_type() -> None:
    before = lock_of(shape("chk.kept", 1, a=int), shape("chk.dropped", 2, b=int))
    assert problems(before, shape("chk.kept", 1, a=int)) == [
        "chk.dropped v2: no class is registered under this type name, so its stored events"
        " cannot be decoded: keep a class with event_type = 'chk.dropped' (or --import the"
        " module that has it)"
    ]


def test_a_type_name_reused_for_other_data() -> None:
    before = lock_of(shape("chk.reused", 1, order_id=str, total=Decimal))
    found = problems(before, shape("chk.reused", 1, sku=str, quantity=int))
    assert [line.split(":")[1].strip() for line in found] == [
        "field 'order_id' (string) was removed",
        "field 'total' (number | string) was removed",
        "new field 'sku' (string) is required",
        "new field 'quantity' (integer) is required",
    ]


def test_a_raised_schema_version_without_an_upcaster() -> None:
    before = lock_of(shape("chk.bumped", 1, name=str))
    after = shape("chk.bumped", 2, full_name=str)
    assert problems(before, after) == [
        "chk.bumped v1: schema_version is now 2 but no upcaster turns version 1 into 2:"
        " add @upcaster(chk_bumped, from_version=1)"
    ]


def test_every_missing_step_of_an_upcaster_chain_is_reported() -> None:
    before = lock_of(shape("chk.chain", 1, name=str))
    after = shape("chk.chain", 3, full_name=str)
    steps = {("chk.chain", 2): lambda p: p}
    assert problems(before, after, upcasters=steps) == [
        "chk.chain v1: schema_version is now 3 but no upcaster turns version 1 into 2:"
        " add @upcaster(chk_chain, from_version=1)"
    ]


def test_a_lowered_schema_version() -> None:
    before = lock_of(shape("chk.lowered", 2, name=str))
    [line] = problems(before, shape("chk.lowered", 1, name=str))
    assert line == (
        "chk.lowered v2: the class is at schema_version 1, below the recorded 2: events stored"
        " at 2 cannot be read; put schema_version back"
    )


# -- compatible changes ----------------------------------------------------------------


def test_a_new_optional_field_passes_and_is_reported_as_unrecorded() -> None:
    before = lock_of(shape("chk.optional", 1, name=str))
    after = shape("chk.optional", 1, name=str, note=(str | None, None), lot=(str, "unknown"))
    assert problems(before, after) == []
    assert unrecorded(before, registry(after)) == [
        "chk.optional v1: new optional field(s) 'note', 'lot'"
    ]


def test_a_new_optional_field_in_a_nested_model_passes() -> None:
    before = lock_of(shape("chk.nested_opt", 1, lines=list[Line], first=Line | None))
    after = shape("chk.nested_opt", 1, lines=list[WiderLine], first=WiderLine | None)
    assert problems(before, after) == []


def test_a_new_type_passes_and_is_reported_as_unrecorded() -> None:
    before = lock_of(shape("chk.old_type", 1, a=int))
    now = registry(shape("chk.old_type", 1, a=int), shape("chk.new_type", 1, b=int))
    assert check(before, now) == []
    assert unrecorded(before, now) == ["chk.new_type v1: new event type"]


def test_titles_descriptions_defaults_and_class_names_are_not_changes() -> None:
    before = lock_of(shape("chk.cosmetic", 1, note=(str, "")))
    after = shape("chk.cosmetic", 1, note=(str, Field("none", description="why", title="Why")))
    assert problems(before, after) == []


def test_a_raised_schema_version_with_its_upcaster_passes_and_keeps_the_old_shape() -> None:
    v1 = shape("chk.upcast", 1, name=str)
    before = lock_of(v1)
    v2 = shape("chk.upcast", 2, full_name=str)
    upcasts = {("chk.upcast", 1): lambda p: {"full_name": p["name"]}}
    assert problems(before, v2, upcasters=upcasts) == []
    after = relock(before, registry(v2, upcasters=upcasts), ("app.events",))
    assert sorted(after.events["chk.upcast"].versions) == [1, 2]
    assert after.events["chk.upcast"].versions[1] == before.events["chk.upcast"].versions[1]
    # v2's own shape is now held to the same rules.
    v2_retyped = shape("chk.upcast", 2, full_name=int)
    [line] = problems(after, v2_retyped, upcasters=upcasts)
    assert line.startswith("chk.upcast v2: field 'full_name' changed type from string to integer")


def test_a_recursive_model_is_compared_once() -> None:
    before = lock_of(shape("chk.tree", 1, root=Tree))
    assert problems(before, shape("chk.tree", 1, root=Tree)) == []


# -- the lock itself -------------------------------------------------------------------


def test_relock_refuses_a_break_unless_forced() -> None:
    before = lock_of(shape("chk.relock", 1, a=int), shape("chk.relock_gone", 1, b=int))
    now = registry(shape("chk.relock", 1, a=str))
    with pytest.raises(IncompatibleSchema) as caught:
        relock(before, now, ("app.events",), source="app.lock")
    assert caught.value.problems[0].startswith("chk.relock v1: field 'a' changed type")
    assert str(caught.value).startswith("app.lock: chk.relock v1: field 'a' changed type")
    assert str(caught.value).endswith("(and 1 more)")
    forced = relock(before, now, ("app.events",), force=True)
    assert list(forced.events) == ["chk.relock"]
    assert check(forced, now) == []


def test_the_lock_leaves_out_metadata_and_is_stable_sorted_json(tmp_path: Any) -> None:
    lock = lock_of(shape("chk.zeta", 1, b=int, a=str), shape("chk.alpha", 1, c=int))
    schema = lock.events["chk.zeta"].versions[1]
    assert list(schema["properties"]) == ["b", "a"]  # pydantic's field order, as declared
    assert schema["required"] == ["b", "a"]
    text = lock.dumps()
    assert text == lock_of(shape("chk.zeta", 1, b=int, a=str), shape("chk.alpha", 1, c=int)).dumps()
    assert text.index('"chk.alpha"') < text.index('"chk.zeta"')
    assert text.index('"a": {') < text.index('"b": {')  # keys sorted in the file
    for name in ("event_id", "aggregate_id", "occurred_at", "position", "causation_id"):
        assert f'"{name}"' not in text
    path = tmp_path / "app.lock.json"
    write_lock(path, lock)
    assert read_lock(path) == lock
    assert path.read_text() == text


def test_a_file_that_is_not_a_lock(tmp_path: Any) -> None:
    path = tmp_path / "app.lock.json"
    path.write_text('{"format": 1, "events": {"T": {"class": "m:T", "versions": {"one": {}}}}}')
    with pytest.raises(ConfigurationError, match=r"app.lock.json is not a schema lock .*versions"):
        read_lock(path)
    with pytest.raises(ConfigurationError, match=r"no schema lock at .*schema lock --import"):
        read_lock(tmp_path / "missing.json")


# -- the check and the codec agree -----------------------------------------------------


def stored(event_type: str, payload: str) -> StoredEvent:
    return StoredEvent(
        position=1,
        stream_id="thing:1",
        aggregate_id="1",
        aggregate_type="thing",
        version=1,
        event_type=event_type,
        schema_version=1,
        event_id=uuid4(),
        occurred_at=datetime(2024, 1, 1, tzinfo=UTC),
        payload=payload,
        metadata="{}",
    )


def reads(cls: type[Event], payload: str) -> bool:
    try:
        EventCodec(registry(cls)).decode(stored(cls.event_type, payload))
    except DecodeError:
        return False
    return True


@pytest.mark.parametrize(
    ("old", "new", "old_payload", "new_payload"),
    [
        ({"a": int}, {"a": int, "b": (str, "x")}, '{"a": 1}', '{"a": 1, "b": "y"}'),
        (
            {"a": list[Line]},
            {"a": list[WiderLine]},
            '{"a": []}',
            '{"a": [{"sku": "s", "quantity": 1, "note": "n"}]}',
        ),
        ({"a": int}, {"a": int, "b": str}, '{"a": 1}', '{"a": 1, "b": "y"}'),
        ({"a": int}, {"a": str}, '{"a": 1}', '{"a": "one"}'),
        ({"a": str}, {"a": str | None}, '{"a": "x"}', '{"a": null}'),
        (
            {"a": Line},
            {"a": FloatLine},
            '{"a": {"sku": "s", "quantity": 1}}',
            '{"a": {"sku": "s", "quantity": 1.5}}',
        ),
    ],
    ids=["optional", "nested-optional", "required", "retyped", "widened", "nested-retyped"],
)
def test_a_change_passes_the_check_exactly_when_both_readers_decode_both_payloads(
    old: dict[str, Any], new: dict[str, Any], old_payload: str, new_payload: str
) -> None:
    before, after = shape("chk.agree", 1, **old), shape("chk.agree", 1, **new)
    both_read = all(
        [
            reads(before, old_payload),
            reads(before, new_payload),
            reads(after, old_payload),
            reads(after, new_payload),
        ]
    )
    assert (problems(lock_of(before), after) == []) is both_read
