"""Comparing what a test expected with what happened, and saying how they differ.

Events are compared by their type and their own fields, never by metadata
(ids, versions and times that the framework stamps); view rows by the
columns the test names. A mismatch reads as one line per item::

    new events differ from the expected ones (1 expected, 2 recorded):
      1. OrderPaid: total: expected Decimal('10.00'), got Decimal('12.50')
      2. unexpected: OrderCancelled(reason='late')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from eventsource.events.base import METADATA_FIELDS, Event

T = TypeVar("T")
U = TypeVar("U")


def own_fields(event: Event) -> dict[str, Any]:
    """The event's own fields (not its metadata), by name, in declaration order."""
    return {
        name: getattr(event, name)
        for name in type(event).model_fields
        if name not in METADATA_FIELDS
    }


def describe_event(event: Event) -> str:
    """`OrderPaid(customer_id='c-1', total=Decimal('10'))`: the type and own fields."""
    fields = ", ".join(f"{name}={value!r}" for name, value in own_fields(event).items())
    return f"{type(event).__name__}({fields})"


def field_differences(
    expected: Mapping[str, Any],
    actual: Mapping[str, Any],
    *,
    words: tuple[str, str] = ("expected", "got"),
) -> list[str]:
    """`name: expected X, got Y` for each name of `expected` whose value differs."""
    wanted_word, found_word = words
    out: list[str] = []
    for name, wanted in expected.items():
        if name not in actual:
            out.append(f"{name}: {wanted_word} {wanted!r}, but there is no such field")
        elif not same_value(wanted, actual[name]):
            out.append(f"{name}: {wanted_word} {wanted!r}, {found_word} {actual[name]!r}")
    return out


def same_value(expected: object, actual: object) -> bool:
    """Equality, except that a naive datetime is taken to be UTC.

    SQLite hands back the naive datetimes it stored for time-zone-aware
    columns; a test writes the aware time it means.
    """
    if isinstance(expected, datetime) and isinstance(actual, datetime):
        return _utc(expected) == _utc(actual)
    return expected == actual


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def event_differences(expected: Event, actual: Event) -> list[str]:
    """How `actual` differs from `expected` by type and own fields; empty if it does not."""
    if type(expected) is not type(actual):
        return [f"expected {describe_event(expected)}, got {describe_event(actual)}"]
    return field_differences(own_fields(expected), own_fields(actual))


def compare_lists(
    what: str,
    expected: Sequence[T],
    actual: Sequence[U],
    *,
    differences: Callable[[T, U], list[str]],
    label: Callable[[T], str],
    describe_expected: Callable[[T], str],
    describe_actual: Callable[[U], str],
    actual_name: str = "got",
) -> str | None:
    """None if the two lists match item by item; else a message listing each item.

    `differences(expected, actual)` says how one pair differs, `label` names
    an expected item briefly (its type, its key) and the `describe_*`
    functions show an item in full.
    """
    lines: list[str] = []
    mismatched = len(expected) != len(actual)
    for index in range(max(len(expected), len(actual))):
        number = f"{index + 1}."
        if index >= len(actual):
            lines.append(f"  {number} missing: {describe_expected(expected[index])}")
        elif index >= len(expected):
            lines.append(f"  {number} unexpected: {describe_actual(actual[index])}")
        else:
            found = differences(expected[index], actual[index])
            mismatched = mismatched or bool(found)
            detail = "; ".join(found) if found else "as expected"
            lines.append(f"  {number} {label(expected[index])}: {detail}")
    if not mismatched:
        return None
    header = (
        f"{what} differ from the expected ones"
        f" ({len(expected)} expected, {len(actual)} {actual_name}):"
    )
    return "\n".join([header, *lines])
