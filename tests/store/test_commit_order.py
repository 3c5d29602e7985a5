"""Global positions follow commit order, so a reader tailing the log never skips.

Without that guarantee a writer that allocates a position and commits late
is passed by a reader that already saw later positions, and its event is
never read. These tests hold transactions open while later writers try to
commit, with a reader tailing the log the whole time.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from eventsource import Aggregate, Event, on
from eventsource.events import StoredEvent
from eventsource.store import EventStore

pytestmark = pytest.mark.slow


class OrderingWritten(Event):
    event_type = "ordering.written"

    round: int
    writer: str


class OrderingLog(Aggregate):
    @on(OrderingWritten)
    def _written(self, event: OrderingWritten) -> None:
        pass


def one_event(stream: str, round_: int, writer: str) -> list[Event]:
    log = OrderingLog(stream)
    log.trigger(OrderingWritten(round=round_, writer=writer))
    return list(log.pending_events)


class Tail(threading.Thread):
    """Follows the log from position 0 the way a projection worker does."""

    def __init__(self, store: EventStore) -> None:
        super().__init__(daemon=True)
        self.store = store
        self.seen: list[StoredEvent] = []
        self.reads = 0
        self.error: BaseException | None = None
        self._stop_requested = threading.Event()

    def run(self) -> None:
        try:
            cursor = 0
            while True:
                finishing = self._stop_requested.is_set()
                batch = self.store.read_log(cursor, limit=500)
                self.reads += 1
                self.seen.extend(batch)
                if batch:
                    cursor = batch[-1].position
                elif finishing:
                    return
                else:
                    time.sleep(0.002)
        except BaseException as exc:
            self.error = exc

    def finish(self) -> list[StoredEvent]:
        self._stop_requested.set()
        self.join(timeout=60)
        assert not self.is_alive()
        if self.error is not None:
            raise self.error
        return self.seen


def run_threads(*targets: Callable[[], Any]) -> None:
    errors: list[BaseException] = []

    def guarded(target: Callable[[], Any]) -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors


ROUNDS = 100
LONG_HOLDS = {20: 1.0, 55: 1.5, 90: 2.0}  # round -> seconds held open
SHORT_HOLD = 0.05
LATER_WRITERS = 3


@dataclass
class Round:
    """One holder that commits late and the later writers it makes wait."""

    number: int
    hold: float
    holder_position: int = 0
    later_positions: list[int] = field(default_factory=list)
    event_ids: set[str] = field(default_factory=set)


def run_round(store: EventStore, round_: Round) -> None:
    inserted = threading.Event()
    later_done = threading.Event()
    holder_events = one_event(f"holder-{round_.number}", round_.number, "holder")
    later_events = [
        one_event(f"later-{round_.number}-{i}", round_.number, f"later-{i}")
        for i in range(LATER_WRITERS)
    ]
    for event in [*holder_events, *(e for batch in later_events for e in batch)]:
        round_.event_ids.add(str(event.event_id))

    def holder() -> None:
        with store.transaction() as conn:
            [round_.holder_position] = store.append(holder_events, connection=conn)
            inserted.set()
            # Later writers try to commit while this transaction stays open.
            later_done.wait(timeout=round_.hold)

    def later(events: list[Event]) -> None:
        inserted.wait(timeout=30)
        round_.later_positions.extend(store.append(events))

    def all_later() -> None:
        run_threads(*(functools.partial(later, events) for events in later_events))
        later_done.set()

    run_threads(holder, all_later)


def test_a_tailing_reader_sees_late_commits_exactly_once_in_order(store: EventStore) -> None:
    rounds = [Round(n, LONG_HOLDS.get(n, SHORT_HOLD)) for n in range(ROUNDS)]
    tail = Tail(store)
    tail.start()
    for round_ in rounds:
        run_round(store, round_)
    expected = {event_id for round_ in rounds for event_id in round_.event_ids}

    seen = tail.finish()
    seen_ids = [str(r.event_id) for r in seen]
    assert len(seen_ids) == len(set(seen_ids)), "an event was read twice"
    assert set(seen_ids) == set(expected), "an event was skipped"
    assert [r.position for r in seen] == sorted(r.position for r in seen)
    assert len({r.position for r in seen}) == len(seen)
    assert seen == store.read_log(0, limit=10_000)
    # Each holder committed before its round's later writers, and its position says so.
    for round_ in rounds:
        assert len(round_.later_positions) == LATER_WRITERS
        assert all(round_.holder_position < later for later in round_.later_positions)
    assert tail.reads > ROUNDS  # the reader really tailed while writers ran


BATCH = 5_000


def test_two_concurrent_large_batches_never_interleave(store: EventStore) -> None:
    batches: dict[str, list[Event]] = {}
    for name in ("left", "right"):
        writer_log = OrderingLog(f"batch-{name}")
        for i in range(BATCH):
            writer_log.trigger(OrderingWritten(round=i, writer=name))
        batches[name] = list(writer_log.pending_events)
    start = threading.Barrier(2)
    appended: dict[str, list[int]] = {}
    tail = Tail(store)
    tail.start()

    def writer(name: str) -> Callable[[], None]:
        def write() -> None:
            start.wait(timeout=30)
            appended[name] = store.append(batches[name])

        return write

    run_threads(writer("left"), writer("right"))
    seen = tail.finish()

    left, right = appended["left"], appended["right"]
    assert len(left) == len(right) == BATCH
    assert left == sorted(left)
    assert right == sorted(right)
    assert max(left) < min(right) or max(right) < min(left), "the batches interleave"

    log = store.read_log(0, limit=3 * BATCH)
    assert len(log) == 2 * BATCH
    assert [r.position for r in log] == sorted(left + right)
    assert [r.stream_id for r in log[:BATCH]] in (
        ["ordering_log:batch-left"] * BATCH,
        ["ordering_log:batch-right"] * BATCH,
    )
    assert [r.version for r in log[:BATCH]] == list(range(1, BATCH + 1))
    assert [r.version for r in log[BATCH:]] == list(range(1, BATCH + 1))
    # The tailing reader saw each batch whole, once, in order.
    assert [r.event_id for r in seen] == [r.event_id for r in log]
