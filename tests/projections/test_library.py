"""A reactor with deadlines stays up while it catches up and writers move loans,
and flags every loan still open exactly once.

This is the set-up that crashed a reactor (the scheduler's thread folded
deadlines into the view the worker's thread was folding a batch into) and
lost moved deadlines (a deadline rescheduled between the scheduler's read
and its claim was claimed with the old payload). Loans last 0 s, so every
loan's deadline is due as soon as it is scheduled.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import orjson
import pytest

from eventsource import Repository
from tests.conftest import unique
from tests.projections.apps_library import LbBook
from tests.projections.conftest import Harness
from tests.projections.streams import WorkerProcess, read_events_sql

pytestmark = pytest.mark.slow

BOOKS = 1_000
SECONDS = 8.0


def open_loans(harness: Harness) -> set[str]:
    """Each book's loan if its last event is a loan, read with plain SQL."""
    last: dict[str, tuple[str, str]] = {}
    for record in read_events_sql(harness.source.engine):
        if record.aggregate_type == "book":
            last[record.aggregate_id] = (record.event_type, orjson.loads(record.payload)["loan"])
    return {loan for kind, loan in last.values() if kind == "lb.lent"}


def flags(harness: Harness) -> Counter[str]:
    """How many times each loan was flagged by the reactor."""
    return Counter(
        r.aggregate_id
        for r in read_events_sql(harness.own_store().engine)
        if r.event_type == "lb.loan_flagged"
    )


def test_a_reactor_with_deadlines_flags_every_open_loan_exactly_once(harness: Harness) -> None:
    repository = Repository(harness.source, LbBook)
    books = {f"b{i}": LbBook(f"b{i}") for i in range(BOOKS)}
    for i, book in enumerate(books.values()):
        book.lend(f"b{i}-loan-0", f"m{i % 50}")
    repository.save(*books.values())
    harness.publish()
    harness.own_store()  # the reactor's context's store, created before it starts
    name = unique("lb_overdue")
    env = harness.env(LBTEST_CONTEXT=harness.context, LBTEST_NAME=name, LBTEST_PERIOD="0")
    reactor = WorkerProcess(
        [
            "projection",
            "run",
            "tests.projections.apps_library:EnvOverdueLoans",
            "--batch-size",
            "50",
        ],
        env,
        harness.tmp_path / "reactor.log",
    )
    stop = threading.Event()
    moved = [0]

    def writer() -> None:
        rng = random.Random(5)
        loans = dict.fromkeys(books, 0)
        while not stop.is_set():
            chosen = rng.sample(sorted(books), 20)
            for book_id in chosen:
                book = repository.get(book_id)
                book.give_back()
                loans[book_id] += 1
                book.lend(f"{book_id}-loan-{loans[book_id]}", "m0")
                repository.save(book)
                moved[0] += 1
            harness.publish()

    thread = threading.Thread(target=writer, name="writer")
    thread.start()
    try:
        time.sleep(SECONDS)
        assert reactor.alive(), reactor.output()
    finally:
        stop.set()
        thread.join(60)
        assert not thread.is_alive(), "the writer is still running"
    harness.publish()
    wanted = open_loans(harness)
    deadline = time.monotonic() + 120
    while not wanted <= set(flags(harness)) and time.monotonic() < deadline:
        assert reactor.alive(), reactor.output()
        time.sleep(0.5)
    reactor.terminate()
    assert reactor.wait(60) == 0, reactor.output()

    counted = flags(harness)
    assert moved[0] > 100
    assert len(wanted) == BOOKS
    assert wanted <= set(counted), f"{len(wanted - set(counted))} open loans never flagged"
    assert max(counted.values()) == 1, "a loan was flagged twice"
    assert "Traceback" not in reactor.output()
