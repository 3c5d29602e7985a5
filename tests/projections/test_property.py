"""Property: however a stream is cut into batches and wherever workers die,
the view equals the fold of all events, each applied once.

Hypothesis draws a stream of account events (deposits, withdrawals, notes,
closes and re-opens, saved in transactions of random size) and a sequence
of worker lives. Each life is a fresh `Worker` with its own batch size and
cache size that either runs a few batches and is abandoned, or dies in the
middle of a batch (its handler raises an exception no code catches, so the
batch's transaction rolls back as in a crash), possibly after a handler
failure that the worker retries. A last worker runs to the end. SQLite
only. The oracle reads the events with its own SQL and checks it has as
many as were generated.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from eventsource import Event, EventStore, Repository, View, Worker
from eventsource.bus.sqllog import SqlLogConsumer
from eventsource.store.engine import create_engine
from tests.projections.apps import BalancesBase, PjAccount, balances
from tests.projections.streams import assert_view_is_fold, read_events_sql, stored_positions

CONTEXT = "pjprop"


class Crash(BaseException):
    """Stands for the process dying: no handler or worker code catches it."""


@dataclass
class Faults:
    crash_at: int | None = None  # die at this handled event of the life
    fail_at: int | None = None  # one handler failure (retried) at this handled event
    seen: int = 0
    failed: bool = False


def touch(self: BalancesBase, event: Event, view: View) -> None:
    faults: Faults = self.faults  # type: ignore[attr-defined]
    faults.seen += 1
    if faults.fail_at == faults.seen and not faults.failed:
        faults.failed = True
        raise RuntimeError("a passing failure")
    if faults.crash_at == faults.seen:
        raise Crash


Projection = balances(CONTEXT, "pj_property", touch=touch)

operations = st.lists(
    st.tuples(
        st.integers(0, 3),  # account
        st.sampled_from(["deposit", "deposit", "withdraw", "note", "close"]),
        st.integers(1, 100),  # amount
        st.integers(1, 6),  # events per transaction
    ),
    min_size=5,
    max_size=60,
)
lives = st.lists(
    st.tuples(
        st.integers(1, 25),  # batch size
        st.sampled_from([2, 5, 1000]),  # cache rows
        st.one_of(st.none(), st.integers(1, 40)),  # crash at
        st.one_of(st.none(), st.integers(1, 40)),  # fail once at
        st.integers(0, 4),  # batches before it is abandoned (when it does not crash)
    ),
    min_size=1,
    max_size=6,
)


def record(store: EventStore, ops: list[tuple[int, str, int, int]]) -> int:
    """Save the operations' events; return how many events were generated."""
    repo = Repository(store, PjAccount)
    accounts = {i: PjAccount.open(f"p-{i}", f"owner-{i % 2}") for i in range(4)}
    generated = len(accounts)
    repo.save(*accounts.values())
    pending = 0
    for index, kind, amount, per_transaction in ops:
        account = accounts[index]
        if account.closed:
            account.reopen(f"owner-{amount % 3}")
        elif kind == "deposit":
            account.deposit(amount)
        elif kind == "withdraw":
            account.withdraw(amount)
        elif kind == "note":
            account.note(str(amount))
        else:
            account.close()
        generated += 1
        pending += 1
        if pending >= per_transaction:
            repo.save(*accounts.values())
            pending = 0
    repo.save(*accounts.values())
    return generated


@settings(
    max_examples=60,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ops=operations, lives=lives)
def test_any_split_and_any_crash_point_folds_every_event_once(
    ops: list[tuple[int, str, int, int]],
    lives: list[tuple[int, int, int | None, int | None, int]],
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        source = EventStore(f"sqlite:///{Path(directory) / 'source.db'}", context=CONTEXT)
        source.create_schema()
        views = create_engine(f"sqlite:///{Path(directory) / 'views.db'}")
        try:
            generated = record(source, ops)
            for batch_size, cache_rows, crash_at, fail_at, steps in lives:
                projection = Projection()
                projection.faults = Faults(crash_at=crash_at, fail_at=fail_at)  # type: ignore[attr-defined]
                worker = Worker(
                    projection,
                    SqlLogConsumer({CONTEXT: source}),
                    engine=views,
                    batch_size=batch_size,
                    cache_rows=cache_rows,
                    retry_backoff=0,
                    poll_timeout=0,
                )
                try:
                    for _ in range(steps if crash_at is None else 10_000):
                        if worker.step().messages == 0 and worker.log.caught_up():
                            break
                except Crash:
                    pass  # the process died: the worker is abandoned mid-batch
            last = Projection()
            last.faults = Faults()  # type: ignore[attr-defined]
            final = Worker(
                last,
                SqlLogConsumer({CONTEXT: source}),
                engine=views,
                batch_size=7,
                poll_timeout=0,
                retry_backoff=0,
            )
            final.run(until_caught_up=True)

            # The oracle reads the rows itself, and checks it has every event generated.
            records = read_events_sql(source.engine)
            assert len(records) == generated
            assert_view_is_fold(views, records)
            [(offset, position, _)] = stored_positions(views, Projection.name).values()
            assert position == records[-1].position
            assert offset == position + 1
        finally:
            source.close()
            views.dispose()
