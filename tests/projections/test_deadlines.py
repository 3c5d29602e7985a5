"""Deadlines: scheduled by a reactor, recorded in its database, run exactly once.

A booking placed with a `pay_by` time schedules an "expire" deadline; paying
cancels it; when it falls due the reactor's `@deadline("expire")` handler
appends `RbBookingExpired` to the booking. Each test counts those events:
one per expired booking, never two, whoever fires the deadline, however
often, even when two workers fire at once or one of them fails; a deadline
that fell due while its worker process was killed runs after a restart,
fired by the scheduler inside `projection run`.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from eventsource import EventStore, Repository, Worker
from eventsource.bus.sqllog import SqlLogConsumer
from eventsource.projections import deadlines
from eventsource.projections.runner import run_workers
from eventsource.projections.tables import deadlines as deadlines_table
from eventsource.store.engine import read_transaction
from tests.conftest import ROOT, unique
from tests.projections.apps_rebuild import (
    ExpireUnpaidBase,
    RbBooking,
    RbBookingExpired,
    expire_unpaid,
)
from tests.projections.rig import Background, eventually

APP = "tests.projections.apps_rebuild:EnvExpireUnpaid"


@pytest.fixture
def store(backend: str, database_url_factory: Callable[..., str]) -> Iterator[EventStore]:
    opened = EventStore(database_url_factory(backend), context=unique("rbbook"))
    opened.create_schema()
    yield opened
    opened.close()


def reactor_worker(store: EventStore, cls: type[ExpireUnpaidBase]) -> Worker:
    return Worker(cls(), SqlLogConsumer({store.context: store}), store=store, retry_backoff=0.01)


def place(store: EventStore, *pay_by: tuple[str, datetime], paid: tuple[str, ...] = ()) -> None:
    bookings = {b: RbBooking.place(b, due) for b, due in pay_by}
    for b in paid:
        bookings[b].pay()
    Repository(store, RbBooking).save(*bookings.values())


def expirations(store: EventStore) -> Counter[str]:
    """How many `RbBookingExpired` each booking has."""
    records = store.read_log(0, 100_000)
    return Counter(r.aggregate_id for r in records if r.event_type == RbBookingExpired.event_type)


def statuses(store: EventStore, owner: str) -> dict[str, str]:
    with read_transaction(store.engine) as conn:
        rows = conn.execute(
            select(deadlines_table.c.key, deadlines_table.c.status).where(
                deadlines_table.c.owner == owner
            )
        )
        return {r[0]: r[1] for r in rows}


def test_deadlines_fire_once_when_due_and_cancel(store: EventStore) -> None:
    name = unique("rb_expire")
    Expire = expire_unpaid(store.context, name)
    now = datetime.now(UTC)
    place(
        store,
        ("due", now - timedelta(seconds=1)),
        ("paid", now - timedelta(seconds=1)),
        ("later", now + timedelta(hours=1)),
        paid=("paid",),
    )
    worker = reactor_worker(store, Expire)
    worker.run(until_caught_up=True)
    assert statuses(store, name) == {"due": "pending", "paid": "cancelled", "later": "pending"}

    assert worker.fire_deadlines() == 1
    assert worker.fire_deadlines() == 0
    assert expirations(store) == {"due": 1}
    assert statuses(store, name)["due"] == "done"

    # The command is caused by the event that scheduled it.
    records = store.read_log(0, 1000)
    placed = next(r for r in records if r.aggregate_id == "due" and r.version == 1)
    expired = store.codec.decode(
        next(r for r in records if r.event_type == RbBookingExpired.event_type)
    )
    assert expired.causation_id == placed.event_id

    # The one due in an hour runs when that hour has come, and only then.
    assert worker.fire_deadlines(now + timedelta(minutes=59)) == 0
    assert worker.fire_deadlines(now + timedelta(hours=1, seconds=1)) == 1
    assert expirations(store) == {"due": 1, "later": 1}
    assert worker.fire_deadlines(now + timedelta(days=1)) == 0


def test_a_deadline_moved_after_it_was_read_runs_only_as_moved(store: EventStore) -> None:
    # The scheduler reads the due list; before it claims an entry, the reactor
    # (another worker) cancels it and schedules it again with a new payload.
    # The old read must not claim the new schedule, and the new one must run
    # with its own payload.
    owner = unique("rb_moved")
    past = datetime.now(UTC) - timedelta(seconds=1)

    def schedule(loan: str) -> None:
        with store.transaction() as conn:
            deadlines.schedule(
                conn,
                owner=owner,
                name="overdue",
                key="book-1",
                due_at=past,
                payload={"loan": loan},
                cause_id=None,
                correlation_id=None,
            )

    schedule("loan-1")
    with read_transaction(store.engine) as conn:
        [read] = deadlines.due(conn, owner, datetime.now(UTC))
    with store.transaction() as conn:
        deadlines.cancel(conn, owner=owner, name="overdue", key="book-1")
    schedule("loan-2")

    with store.transaction() as conn:
        assert not deadlines.claim(conn, read)
    with read_transaction(store.engine) as conn:
        [current] = deadlines.pending(conn, owner)
        assert (current.payload, current.revision) == ({"loan": "loan-2"}, read.revision + 1)
        assert deadlines.claim(conn, current)


def test_two_workers_firing_at_once_run_each_deadline_once(store: EventStore) -> None:
    name = unique("rb_expire_two")
    Expire = expire_unpaid(store.context, name)
    past = datetime.now(UTC) - timedelta(seconds=1)
    place(store, *[(f"b{i}", past) for i in range(30)])
    reactor_worker(store, Expire).run(until_caught_up=True)

    workers = [reactor_worker(store, Expire) for _ in range(2)]
    barrier = threading.Barrier(2)

    def fire(worker: Worker) -> Callable[[], int]:
        def run() -> int:
            barrier.wait()
            return worker.fire_deadlines()

        return run

    runs = [Background(fire(w), f"fire-{i}") for i, w in enumerate(workers)]
    fired = [r.join() for r in runs]
    assert sum(fired) == 30  # type: ignore[arg-type]
    assert expirations(store) == {f"b{i}": 1 for i in range(30)}
    assert set(statuses(store, name).values()) == {"done"}


def test_a_failed_attempt_does_not_undo_what_happened_meanwhile(store: EventStore) -> None:
    """The handler of a due deadline fails slowly (a transient error) and
    rolls back; meanwhile the booking is paid, which cancels the deadline.
    Recording the failed attempt must not bring the cancelled deadline back:
    it would expire a paid booking."""
    name = unique("rb_expire_fail")
    Expire = expire_unpaid(store.context, name, fail_first=1, fail_delay=0.6)
    now = datetime.now(UTC)
    place(store, ("paid-late", now - timedelta(seconds=1)))
    scheduler, reactor = reactor_worker(store, Expire), reactor_worker(store, Expire)
    reactor.run(until_caught_up=True)
    assert statuses(store, name) == {"paid-late": "pending"}

    booking = Repository(store, RbBooking).get("paid-late")
    booking.pay()
    Repository(store, RbBooking).save(booking)  # the reactor has not read it yet

    failing = Background(scheduler.fire_deadlines, "fire")
    time.sleep(0.2)  # the handler is running, its claim held
    paying = Background(lambda: reactor.run(until_caught_up=True), "reactor")
    assert failing.join() == 0
    paying.join()

    assert statuses(store, name) == {"paid-late": "cancelled"}
    assert scheduler.fire_deadlines(now + timedelta(days=1)) == 0
    assert expirations(store) == {}


def test_deadlines_asked_for_by_another_thread_run_on_the_workers_own_thread(
    store: EventStore,
) -> None:
    # While a worker folds batches, a scheduler's call must not touch its view:
    # it is handed to the worker's thread and runs between two batches.
    name = unique("rb_expire_owner")
    ran_on: list[str] = []

    def note_thread(self: ExpireUnpaidBase, due: object, reaction: object) -> None:
        ran_on.append(threading.current_thread().name)

    Expire = expire_unpaid(store.context, name, before_expire=note_thread)
    past = datetime.now(UTC) - timedelta(seconds=1)
    place(store, *[(f"early{i}", past) for i in range(20)])
    worker = reactor_worker(store, Expire)
    worker.batch_size = 7
    stop = threading.Event()
    running = Background(lambda: worker.run(stop=stop), "the-worker")
    try:
        fired = 0
        for round_ in range(30):  # deadlines asked for while batches of new bookings fold
            place(store, *[(f"r{round_}-{i}", past) for i in range(10)])
            fired += worker.fire_deadlines()
        deadline = time.monotonic() + 30
        while len(expirations(store)) < 320 and time.monotonic() < deadline:
            fired += worker.fire_deadlines()  # the last bookings' deadlines, once scheduled
            time.sleep(0.05)
    finally:
        stop.set()
        running.join()
    assert fired == 320
    assert set(ran_on) == {"the-worker"}
    assert set(expirations(store).values()) == {1}


def test_run_workers_fires_due_deadlines_by_itself(store: EventStore) -> None:
    name = unique("rb_expire_sched")
    Expire = expire_unpaid(store.context, name)
    place(store, ("soon", datetime.now(UTC) + timedelta(seconds=0.5)))
    stop = threading.Event()
    worker = reactor_worker(store, Expire)
    running = Background(
        lambda: run_workers([worker], stop=stop, deadline_interval=0.2, lag_interval=0), "run"
    )
    try:
        eventually(lambda: expirations(store) == {"soon": 1}, timeout=20, what="the deadline")
    finally:
        stop.set()
        running.join()
    assert statuses(store, name) == {"soon": "done"}


def test_a_deadline_due_while_the_worker_was_down_runs_after_restart(
    store: EventStore, tmp_path: Path
) -> None:
    name = unique("rb_expire_down")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSOURCE_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "EVENTSOURCE_DATABASE_URL": store.engine.url.render_as_string(hide_password=False),
        "EVENTSOURCE_CONTEXT": store.context,
        "RBTEST_CONTEXT": store.context,
        "RBTEST_NAME": name,
    }
    log = tmp_path / "worker.log"
    pay_by = datetime.now(UTC) + timedelta(seconds=4)
    place(store, ("while-down", pay_by))

    def start() -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "eventsource", "projection", "run", APP],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    # 1. The worker records the deadline, and is killed before it is due.
    first = start()
    try:
        eventually(lambda: statuses(store, name) != {}, timeout=30, what="the deadline")
    finally:
        first.kill()
        first.wait(30)
    assert datetime.now(UTC) < pay_by, "too slow: the deadline was due before the kill"
    assert statuses(store, name) == {"while-down": "pending"}

    # 2. It falls due while no worker runs: nothing happens.
    time.sleep(max(0.0, (pay_by - datetime.now(UTC)).total_seconds()) + 0.3)
    assert expirations(store) == {}
    with read_transaction(store.engine) as conn:
        assert [d.key for d in deadlines.pending(conn, name)] == ["while-down"]

    # 3. A new process's scheduler runs it, once.
    second = start()
    try:
        eventually(
            lambda: expirations(store) == {"while-down": 1}, timeout=30, what="the late deadline"
        )
        time.sleep(1.5)  # the scheduler polls every second: it must not run it again
    finally:
        second.send_signal(signal.SIGTERM)
        code = second.wait(30)
    assert code == 0, log.read_text()[-3000:]
    assert expirations(store) == {"while-down": 1}
    assert statuses(store, name) == {"while-down": "done"}


def test_run_workers_logs_each_workers_lag_from_its_own_thread(
    store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    name = unique("rb_lag_line")
    Expire = expire_unpaid(store.context, name)
    place(store, *[(f"lag{i}", datetime.now(UTC) + timedelta(days=1)) for i in range(5)])
    stop = threading.Event()
    worker = reactor_worker(store, Expire)
    caplog.set_level(logging.INFO, logger="eventsource.projections.worker")
    running = Background(
        lambda: run_workers([worker], stop=stop, lag_interval=0.2), f"worker-{name}"
    )
    try:
        eventually(
            lambda: any("lag 0 over 1 partition(s)" in r.getMessage() for r in caplog.records),
            timeout=20,
            what="a lag line",
        )
    finally:
        stop.set()
        running.join()
    lines = [r for r in caplog.records if "over 1 partition(s)" in r.getMessage()]
    assert lines[-1].getMessage() == f"reactor {name}: lag 0 over 1 partition(s)"
    # The scheduler only asked: the worker's own thread read its consumer.
    assert {r.threadName for r in lines} == {f"worker-{name}"}
