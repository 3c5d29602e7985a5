"""A projection writing PostgreSQL commits each batch on its committer thread
while the next batch is read. A commit that fails there is sorted out the way
a failure on one thread is: retried, or narrowed to its culprit, and the view
stays exactly-once."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, text

from eventsource import Event, View, Worker
from eventsource.errors import PoisonEvent
from eventsource.store.engine import create_engine
from eventsource.tuning import SWITCH_INTERVAL
from tests.conftest import unique
from tests.projections.apps import BalancesBase, balances
from tests.projections.conftest import KAFKA, Harness
from tests.projections.streams import (
    assert_view_is_fold,
    consumer_state,
    fold,
    populate,
    read_all,
    stored_positions,
    view_state,
)

pytestmark = pytest.mark.parametrize("harness", [KAFKA], indirect=True)


@pytest.fixture
def short_switch_interval() -> Iterator[None]:
    """The GIL switch interval `EVENTSOURCE_TUNE_INTERPRETER` sets, under
    which a projection into PostgreSQL commits behind."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def _commit_threads(harness: Harness, name: str, batch_size: int | None = 50) -> set[str]:
    """The threads on which a worker's commits ran, folding the whole log."""
    threads: set[str] = set()

    def note_thread(*_: Any) -> None:
        threads.add(threading.current_thread().name.split("-")[0])

    cls = balances(harness.context, unique(name))
    worker = Worker(cls(), harness.log(), engine=harness.views, batch_size=batch_size)
    event.listen(harness.views, "commit", note_thread)
    try:
        worker.run(until_caught_up=True)
    finally:
        event.remove(harness.views, "commit", note_thread)
        worker.close()
    assert_view_is_fold(harness.views, read_all(harness.source))
    return threads


def test_at_the_default_switch_interval_small_batches_commit_on_the_workers_thread(
    harness: Harness,
) -> None:
    # At CPython's 5 ms a committer thread waits for the GIL after each of
    # its statements, and behind small batches one thread is the faster
    # (benchmarks/README.md).
    populate(harness.source, events=300, accounts=10)
    harness.publish()
    assert sys.getswitchinterval() > SWITCH_INTERVAL
    assert "commit" not in _commit_threads(harness, "pj_one_thread", batch_size=1000)


def test_at_the_default_switch_interval_default_batches_commit_behind(harness: Harness) -> None:
    populate(harness.source, events=300, accounts=10)
    harness.publish()
    assert sys.getswitchinterval() > SWITCH_INTERVAL
    assert "commit" in _commit_threads(harness, "pj_default_batches", batch_size=None)


@pytest.mark.usefixtures("short_switch_interval")
def test_under_a_short_switch_interval_a_projection_commits_behind(harness: Harness) -> None:
    populate(harness.source, events=300, accounts=10)
    harness.publish()
    assert "commit" in _commit_threads(harness, "pj_two_threads")


@pytest.mark.usefixtures("short_switch_interval")
def test_a_connection_lost_while_committing_behind_is_retried_and_applied_once(
    harness: Harness,
) -> None:
    populate(harness.source, events=600, accounts=20)
    harness.publish()
    killer = create_engine(harness.views_url)
    cuts: list[str] = []

    def cut_during_commit(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        # The server drops the connection as the committer advances the positions.
        on_committer = threading.current_thread().name.startswith("commit-")
        if on_committer and "projection_positions" in statement and len(cuts) < 3:
            pid = conn.connection.dbapi_connection.info.backend_pid
            with killer.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            cuts.append(threading.current_thread().name)

    cls = balances(harness.context, unique("pj_behind_cut"), max_retries=1)
    interval = sys.getswitchinterval()
    event.listen(harness.views, "before_cursor_execute", cut_during_commit)
    worker = Worker(cls(), harness.log(), engine=harness.views, batch_size=50, retry_backoff=0.01)
    try:
        applied = worker.run(until_caught_up=True)
    finally:
        event.remove(harness.views, "before_cursor_execute", cut_during_commit)
        worker.close()
        killer.dispose()

    records = read_all(harness.source)
    assert len(cuts) == 3
    assert applied == worker.applied > 0
    assert_view_is_fold(harness.views, records)
    assert consumer_state(harness.views, cls.name)["status"] == "stopped"  # type: ignore[index]
    assert sys.getswitchinterval() == interval  # the worker gave the interval back


@pytest.mark.usefixtures("short_switch_interval")
def test_a_row_refused_while_committing_behind_is_found_and_stops_the_worker(
    harness: Harness,
) -> None:
    populate(harness.source, events=600, accounts=20)
    harness.publish()
    records = read_all(harness.source)
    deposits = [r for r in records if r.event_type == "pj.deposited"]
    target = deposits[len(deposits) // 2]
    committed_on: list[str] = []

    def refused_at_flush(self: BalancesBase, event: Event, view: View) -> None:
        if event.event_id == target.event_id:
            # Too long for the column: only the database notices, at the flush.
            view.upsert(self.owners, owner="x" * 200, accounts=1)

    def note_thread(*_: Any) -> None:
        committed_on.append(threading.current_thread().name)

    cls = balances(
        harness.context, unique("pj_behind_refused"), max_retries=1, touch=refused_at_flush
    )
    worker = Worker(cls(), harness.log(), engine=harness.views, batch_size=50, retry_backoff=0.01)
    event.listen(harness.views, "commit", note_thread)
    try:
        with pytest.raises(PoisonEvent) as raised:
            worker.run(until_caught_up=True)
    finally:
        event.remove(harness.views, "commit", note_thread)
        worker.close()

    poison = raised.value
    assert poison.event_id == target.event_id
    assert "too long" in str(poison.error)
    assert any(name.startswith("commit-") for name in committed_on)
    # Not one step past it in its partition, and its stream's history before it applied.
    assert stored_positions(harness.views, cls.name)[(poison.topic, poison.partition)][0] == (
        poison.offset
    )
    before = [r for r in records if r.aggregate_id == target.aggregate_id]
    before = [r for r in before if r.version < target.version]
    expected = fold(before).balances[target.aggregate_id]
    assert view_state(harness.views).balances[target.aggregate_id] == expected
    assert consumer_state(harness.views, cls.name)["status"] == "failed"  # type: ignore[index]
