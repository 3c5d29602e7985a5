"""Many writers, threads and processes, racing to save one aggregate.

Optimistic concurrency must let exactly one writer win each version: the
number of successful saves equals the final version, the stream's versions
run 1..N with no hole or duplicate, each winner's event is stored exactly
once, and every loser gets a `ConcurrencyError` and records nothing.
"""

from __future__ import annotations

import multiprocessing
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any

import pytest

from eventsource import Aggregate, ConcurrencyError, Event, Repository, on
from eventsource.events import stream_id_for
from eventsource.store import EventStore

pytestmark = pytest.mark.slow

THREADS = 8
PROCESSES = 8
ATTEMPTS_EACH = 50  # 16 writers x 50 = 800 attempts


class RaceIncremented(Event):
    event_type = "race.incremented"

    writer: str
    attempt: int


class RaceCounter(Aggregate):
    count: int = 0

    def increment(self, writer: str, attempt: int) -> None:
        self.trigger(RaceIncremented(writer=writer, attempt=attempt))

    @on(RaceIncremented)
    def _incremented(self, event: RaceIncremented) -> None:
        self.count += 1


@dataclass
class Outcome:
    writer: str
    won: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def attempt_all(store: EventStore, counter_id: str, writer: str, attempts: int) -> Outcome:
    """Each attempt: load (or create), increment, save once; no retry."""
    counters = Repository(store, RaceCounter)
    outcome = Outcome(writer)
    for attempt in range(attempts):
        try:
            counter = counters.find(counter_id) or RaceCounter(counter_id)
            counter.increment(writer, attempt)
            counters.save(counter)
        except ConcurrencyError:
            outcome.lost.append(attempt)
        except Exception:
            outcome.unexpected.append(traceback.format_exc())
        else:
            outcome.won.append(attempt)
    return outcome


def process_writer(
    url: str, counter_id: str, writer: str, *, attempts: int, ready: Any, go: Any, results: Any
) -> None:
    """Runs in a spawned process: its own interpreter, engine and connections."""
    announced = False
    try:
        with EventStore(url, context="race") as store:
            store.head_position()  # connect before the start signal
            ready.put(writer)
            announced = True
            go.wait(60)
            outcome = attempt_all(store, counter_id, writer, attempts)
    except Exception:
        outcome = Outcome(writer, unexpected=[traceback.format_exc()])
    if not announced:
        ready.put(writer)
    results.put(outcome)


def test_sixteen_writers_race_on_one_aggregate(store_factory, database_url: str) -> None:
    store: EventStore = store_factory(url=database_url)
    counter_id = "the-counter"
    spawn = multiprocessing.get_context("spawn")
    ready, results, go = spawn.Queue(), spawn.Queue(), spawn.Event()

    processes = [
        spawn.Process(
            target=process_writer,
            args=(database_url, counter_id, f"process-{i}"),
            kwargs={"attempts": ATTEMPTS_EACH, "ready": ready, "go": go, "results": results},
        )
        for i in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    outcomes: list[Outcome] = []
    try:
        for _ in processes:
            ready.get(timeout=120)

        def thread_writer(name: str) -> None:
            go.wait(60)
            outcomes.append(attempt_all(store, counter_id, name, ATTEMPTS_EACH))

        threads = [
            threading.Thread(target=thread_writer, args=(f"thread-{i}",)) for i in range(THREADS)
        ]
        for thread in threads:
            thread.start()
        go.set()
        outcomes.extend(results.get(timeout=300) for _ in processes)
        for thread in threads:
            thread.join(timeout=300)
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    assert [p.exitcode for p in processes] == [0] * PROCESSES

    assert len(outcomes) == THREADS + PROCESSES
    unexpected = [text for o in outcomes for text in o.unexpected]
    assert unexpected == [], unexpected[0]
    wins = {(o.writer, a) for o in outcomes for a in o.won}
    losses = {(o.writer, a) for o in outcomes for a in o.lost}
    assert len(wins) + len(losses) == (THREADS + PROCESSES) * ATTEMPTS_EACH == 800
    assert wins
    assert losses, "no writer ever lost a race: the test did not exercise conflicts"
    assert any(o.won for o in outcomes if o.writer.startswith("process"))
    assert any(o.won for o in outcomes if o.writer.startswith("thread"))

    final = Repository(store, RaceCounter).get(counter_id)
    assert final.version == len(wins)
    assert final.count == len(wins)
    records = store.read_stream(stream_id_for("race_counter", counter_id))
    assert [r.version for r in records] == list(range(1, len(wins) + 1))
    stored = [store.codec.decode(r) for r in records]
    stored_attempts = [(e.writer, e.attempt) for e in stored]  # type: ignore[attr-defined]
    assert len(stored_attempts) == len(set(stored_attempts))
    assert set(stored_attempts) == wins  # every win stored once, no loss stored
    assert store.head_position() == records[-1].position
