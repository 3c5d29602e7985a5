"""The dry run decodes a real store's events through the current classes and upcasters,
on SQLite and PostgreSQL, and reports failures by type and schema version."""

from __future__ import annotations

import threading
from typing import Any

from eventsource import EventStore
from eventsource.events.codec import EventCodec
from eventsource.schema import dry_run
from eventsource.schema.dryrun import DryRun
from tests.schema.shapes import registry, shape
from tests.schema.stored import HISTORY, append, append_history, record, stream_at


def current_codec() -> EventCodec:
    """The classes of `DRY_APP`, built here."""
    added = shape("dry.Added", 2, sku=str, count=int)
    removed = shape("dry.Removed", 1, sku=str)
    upcasts = {("dry.Added", 1): lambda p: {"sku": p["sku"], "count": p["quantity"]}}
    return EventCodec(registry(added, removed, upcasters=upcasts))


def summary(result: DryRun) -> list[tuple[Any, ...]]:
    return [
        (
            r.event_type,
            r.schema_version,
            r.stored,
            r.checked,
            r.failed,
            r.first_failure and r.first_failure.position,
        )
        for r in result.reports
    ]


def test_every_event_is_decoded_and_failures_are_counted_by_type_and_version(
    store: EventStore,
) -> None:
    p = append_history(store)
    result = dry_run(store, codec=current_codec(), batch_size=4)
    assert result.complete
    assert result.reached == result.head == p[-1]
    assert summary(result) == [
        ("dry.Added", 1, 5, 5, 1, p[4]),
        ("dry.Added", 2, 3, 3, 0, None),
        ("dry.Removed", 1, 2, 2, 2, p[5]),
        ("dry.Unknown", 1, 1, 1, 1, p[7]),
    ]
    added, _, removed, unknown = result.reports
    assert added.first_failure is not None
    assert removed.first_failure is not None
    assert added.first_failure.reason == "KeyError: 'quantity'"
    assert added.first_failure.stream_id == stream_at(store, p[4])
    assert removed.first_failure.reason.startswith(
        "payload failed validation: sku: Input should be a valid string"
    )
    assert str(unknown) == (
        f"dry.Unknown v1: 1 of 1 checked failed to decode (1 stored), first at position {p[7]}"
        f" (stream {stream_at(store, p[7])!r} version 1): no event class is registered under"
        " this type name"
    )
    assert result.failures == [added, removed, unknown]


def test_a_sample_decodes_the_first_events_of_each_type_and_version(store: EventStore) -> None:
    p = append_history(store)
    result = dry_run(store, codec=current_codec(), sample=2)
    assert summary(result) == [
        ("dry.Added", 1, 5, 2, 0, None),  # the bad one is the fifth: not sampled
        ("dry.Added", 2, 3, 2, 0, None),
        ("dry.Removed", 1, 2, 2, 2, p[5]),
        ("dry.Unknown", 1, 1, 1, 1, p[7]),
    ]


def test_it_reads_up_to_the_head_it_started_from(store: EventStore) -> None:
    append_history(store)
    progress: list[tuple[int, int]] = []

    def appended_meanwhile(position: int, head: int) -> None:
        progress.append((position, head))
        if len(progress) == 1:
            append(store, record("dry.Added", 2, '{"sku": "late", "count": 0}'))

    result = dry_run(store, codec=current_codec(), batch_size=5, on_progress=appended_meanwhile)
    assert sum(r.stored for r in result.reports) == len(HISTORY)
    assert [head for _, head in progress] == [result.head] * 3
    assert progress[-1][0] == result.head


def test_a_stop_ends_it_after_the_batch_in_hand(store: EventStore) -> None:
    p = append_history(store)
    stop = threading.Event()
    result = dry_run(
        store,
        codec=current_codec(),
        batch_size=3,
        stop=stop,
        on_progress=lambda position, head: stop.set(),
    )
    assert not result.complete
    assert result.reached == p[2]
    assert sum(r.stored for r in result.reports) == 3


def test_an_empty_store_is_complete(store: EventStore) -> None:
    result = dry_run(store, codec=current_codec())
    assert result.complete
    assert result.head == 0
    assert result.reports == []
