"""Decode a store's events through the current classes and upcasters, changing nothing.

Before a deploy, this answers what the schema lock cannot: whether the events
actually stored (including ones written before the lock existed, or by an
upcaster's assumptions) still decode. Reading only: nothing is written, no
table is created, no row is rewritten.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from eventsource.errors import DecodeError
from eventsource.events.codec import EventCodec
from eventsource.events.records import StoredEvent
from eventsource.store.eventstore import EventStore


@dataclass(frozen=True)
class Failure:
    """Where one event that fails to decode is stored, and why it fails."""

    position: int
    stream_id: str
    version: int
    reason: str


@dataclass
class TypeReport:
    """The events of one type and schema version: how many, how many decoded, failed."""

    event_type: str
    schema_version: int
    stored: int = 0
    checked: int = 0
    failed: int = 0
    first_failure: Failure | None = None

    def __str__(self) -> str:
        head = f"{self.event_type} v{self.schema_version}"
        if self.first_failure is None:
            return f"{head}: {self.stored:,} stored, {self.checked:,} checked, all decoded"
        first = self.first_failure
        return (
            f"{head}: {self.failed:,} of {self.checked:,} checked failed to decode ({self.stored:,}"
            f" stored), first at position {first.position} (stream {first.stream_id!r} version"
            f" {first.version}): {first.reason}"
        )

    def as_dict(self) -> dict[str, object]:
        first = self.first_failure
        return {
            "event_type": self.event_type,
            "schema_version": self.schema_version,
            "stored": self.stored,
            "checked": self.checked,
            "failed": self.failed,
            "first_failure": None if first is None else first.__dict__,
        }


@dataclass
class DryRun:
    """What a dry run found, by type and schema version in name order.

    `complete` is False when it was stopped before the head it set out to reach.
    """

    head: int
    reached: int = 0
    complete: bool = False
    reports: list[TypeReport] = field(default_factory=list)

    @property
    def failures(self) -> list[TypeReport]:
        return [r for r in self.reports if r.failed]


def dry_run(
    store: EventStore,
    *,
    codec: EventCodec | None = None,
    sample: int | None = None,
    batch_size: int = 1000,
    on_progress: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
) -> DryRun:
    """Decode the store's events up to its head now, without writing anything.

    `sample` decodes only the first N events (in log order) of each type and
    schema version; every event is still counted. `on_progress(position, head)`
    is called after each batch; `stop` ends the run after the batch in hand.
    """
    codec = codec or store.codec
    result = DryRun(head=store.head_position())
    by_key: dict[tuple[str, int], TypeReport] = {}
    while result.reached < result.head:
        if stop is not None and stop.is_set():
            break
        records = store.read_log(result.reached, batch_size)
        if not records:  # nothing above the last one read: the head is reached
            result.reached = result.head
            break
        for record in records:
            if record.position > result.head:
                break
            _decode(codec, record, by_key, sample)
        result.reached = min(records[-1].position, result.head)
        if on_progress is not None:
            on_progress(result.reached, result.head)
    result.complete = result.reached >= result.head
    result.reports = [by_key[key] for key in sorted(by_key)]
    return result


def _decode(
    codec: EventCodec,
    record: StoredEvent,
    by_key: dict[tuple[str, int], TypeReport],
    sample: int | None,
) -> None:
    key = (record.event_type, record.schema_version)
    report = by_key.get(key)
    if report is None:
        report = by_key[key] = TypeReport(*key)
    report.stored += 1
    if sample is not None and report.checked >= sample:
        return
    report.checked += 1
    try:
        codec.decode(record)
    except DecodeError as exc:
        report.failed += 1
        if report.first_failure is None:
            report.first_failure = Failure(
                record.position, record.stream_id, record.version, exc.reason
            )
