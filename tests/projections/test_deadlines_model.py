"""A state machine over deadlines: schedule, cancel and reschedule keys, let them
fall due, fire them, fail and crash in their handlers, restart the worker,
all interleaved with the reactor's batches.

The reactor schedules a deadline per key from `DmPlanned` events (a token and
a due time each) and cancels it on `DmDropped`; its handler records the
token it was given as a `DmFired` event. Invariants, checked from the stored
events: each schedule (token) fires at most once, never before its due time
on the machine's clock; and once the machine quiesces (every event applied,
the clock far ahead, fired until nothing is left) the schedule each key
still holds fires exactly once. SQLite only: the rules interleave in one
thread, as the worker's own thread does with its batches and its deadlines.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from eventsource import (
    Aggregate,
    Deadline,
    Event,
    EventStore,
    Reaction,
    Reactor,
    Repository,
    Worker,
    deadline,
    handles,
    on,
)
from eventsource.bus.sqllog import SqlLogConsumer
from eventsource.projections import deadlines
from eventsource.store.engine import read_transaction

CONTEXT = "dmodel"
KEYS = ["k0", "k1"]


class DmPlanned(Event):
    event_type = "dm.planned"
    token: str
    due_at: datetime


class DmDropped(Event):
    event_type = "dm.dropped"


class DmPlan(Aggregate, type_name="plan"):
    def plan(self, token: str, due_at: datetime) -> None:
        self.trigger(DmPlanned(token=token, due_at=due_at))

    def drop(self) -> None:
        self.trigger(DmDropped())

    @on(DmPlanned)
    def _planned(self, event: DmPlanned) -> None:
        pass

    @on(DmDropped)
    def _dropped(self, event: DmDropped) -> None:
        pass


class DmFired(Event):
    event_type = "dm.fired"
    key: str


class DmFiring(Aggregate, type_name="firing"):
    def fire(self, key: str) -> None:
        self.trigger(DmFired(key=key))

    @on(DmFired)
    def _fired(self, event: DmFired) -> None:
        pass


class Crash(BaseException):
    """The process dies inside the handler: nothing catches it."""


class DmReactor(Reactor):
    name = "dm_reactor"
    topics = [f"{CONTEXT}.plan"]
    max_retries = 50  # failures are passing here: a schedule must not give up
    faults: ClassVar[list[str]] = []  # "fail" or "crash", consumed one per handler call

    @handles(DmPlanned)
    def _planned(self, event: DmPlanned, reaction: Reaction) -> None:
        reaction.schedule("d", event.aggregate_id, event.due_at, {"token": event.token})

    @handles(DmDropped)
    def _dropped(self, event: DmDropped, reaction: Reaction) -> None:
        reaction.cancel("d", event.aggregate_id)

    @deadline("d")
    def _due(self, due: Deadline, reaction: Reaction) -> None:
        firings = reaction.repository(DmFiring)
        firing = DmFiring(due.payload["token"])
        firing.fire(due.key)
        firings.save(firing)
        fault = type(self).faults.pop(0) if type(self).faults else None
        if fault == "fail":
            raise RuntimeError("a passing failure of the handler")
        if fault == "crash":
            raise Crash


class Deadlines(RuleBasedStateMachine):
    @initialize()
    def open(self) -> None:
        self.directory = tempfile.TemporaryDirectory()
        url = f"sqlite:///{Path(self.directory.name) / 'store.db'}"
        self.store = EventStore(url, context=CONTEXT)
        self.store.create_schema()
        self.plans = Repository(self.store, DmPlan)
        self.clock = datetime.now(UTC)
        self.tokens = 0
        self.due: dict[str, datetime] = {}  # token -> its due time
        self.last: dict[str, str | None] = {}  # key -> the token its last event planned
        self.fired_at: dict[str, datetime] = {}  # token -> the clock when it fired
        DmReactor.faults = []
        self.worker = self.new_worker()

    def new_worker(self) -> Worker:
        consumer = SqlLogConsumer({CONTEXT: self.store}, poll_interval=0)
        return Worker(DmReactor(), consumer, store=self.store, batch_size=3, poll_timeout=0)

    def teardown(self) -> None:
        if hasattr(self, "store"):
            self.store.close()
            self.directory.cleanup()

    # -- what happens ---------------------------------------------------------

    @rule(key=st.sampled_from(KEYS), seconds=st.integers(-30, 60))
    def plan(self, key: str, seconds: int) -> None:
        plan = self.plans.find(key) or DmPlan(key)
        self.tokens += 1
        token = f"t{self.tokens}"
        due = self.clock + timedelta(seconds=seconds)
        plan.plan(token, due)
        self.plans.save(plan)
        self.due[token] = due
        self.last[key] = token

    @rule(key=st.sampled_from(KEYS))
    def drop(self, key: str) -> None:
        plan = self.plans.find(key)
        if plan is None:
            return
        plan.drop()
        self.plans.save(plan)
        self.last[key] = None

    @rule(steps=st.integers(1, 4))
    def batches(self, steps: int) -> None:
        for _ in range(steps):
            self.worker.step()

    @rule(seconds=st.integers(1, 90))
    def advance(self, seconds: int) -> None:
        self.clock += timedelta(seconds=seconds)

    @rule()
    def fire(self) -> None:
        self.fire_now()

    @rule(fault=st.sampled_from(["fail", "crash"]))
    def fault_in_the_next_handler(self, fault: str) -> None:
        DmReactor.faults.append(fault)

    @rule()
    def restart(self) -> None:
        self.worker.close()
        self.worker = self.new_worker()

    # Another worker process of the same reactor: its scheduler reads the due
    # list, this worker applies batches meanwhile (which may cancel or move
    # those deadlines), then it fires what it read, at its own clock.

    @precondition(lambda self: self.tokens > 0)
    @rule(ahead=st.integers(0, 120), steps=st.integers(0, 3))
    def another_worker_fires_what_it_read_a_moment_ago(self, ahead: int, steps: int) -> None:
        when = self.clock + timedelta(seconds=ahead)
        with read_transaction(self.store.engine) as conn:
            read = deadlines.due(conn, DmReactor.name, when)
        for _ in range(steps):
            self.worker.step()
        other = self.new_worker()
        before = set(self.fired())
        original = deadlines.due
        deadlines.due = lambda *_, **__: read
        try:
            other.fire_deadlines(when)
        except Crash:
            pass  # that process died mid-handler
        finally:
            deadlines.due = original
            other.close()
        for token in set(self.fired()) - before:
            self.fired_at[token] = when

    def fire_now(self) -> None:
        before = set(self.fired())
        try:
            self.worker.fire_deadlines(self.clock)
        except Crash:
            self.restart()  # the process died mid-handler: its transaction is gone
        for token in set(self.fired()) - before:
            self.fired_at[token] = self.clock

    def fired(self) -> Counter[str]:
        records = self.store.read_log(0, 1_000_000)
        return Counter(r.aggregate_id for r in records if r.event_type == DmFired.event_type)

    # -- what always holds ----------------------------------------------------

    @invariant()
    def each_schedule_fires_at_most_once_and_never_early(self) -> None:
        if not hasattr(self, "store"):
            return
        counted = self.fired()
        assert all(n == 1 for n in counted.values()), counted
        for token, when in self.fired_at.items():
            assert self.due[token] <= when, (token, self.due[token], when)

    def quiesce(self) -> None:
        """Apply every event, then fire far ahead until nothing is left."""
        DmReactor.faults = []
        while self.worker.step().messages:
            pass
        self.clock += timedelta(days=365)
        for _ in range(20):
            before = len(self.fired_at)
            self.fire_now()
            if len(self.fired_at) == before:
                break


class DeadlinesQuiescing(Deadlines):
    def teardown(self) -> None:
        if hasattr(self, "store"):
            self.quiesce()
            self.each_schedule_fires_at_most_once_and_never_early()
            counted = self.fired()
            for key, token in self.last.items():
                if token is not None:
                    assert counted[token] == 1, f"{key}'s schedule {token} did not fire"
        super().teardown()


DeadlinesQuiescing.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_deadlines_fire_once_never_early_and_every_live_one_fires = DeadlinesQuiescing.TestCase


def test_the_model_sees_a_handler_that_ran_twice() -> None:
    # The oracle itself: two DmFired for one token read as two.
    machine = Deadlines()
    machine.open()
    try:
        firings = Repository(machine.store, DmFiring)
        for _ in range(2):
            firing = firings.find("t-twice") or DmFiring("t-twice")
            firing.fire("k0")
            firings.save(firing)
        assert machine.fired()["t-twice"] == 2
    finally:
        machine.teardown()
