"""A zombie worker: paused before its commit while its partitions move on.

Worker A polls a batch and stalls before committing it (in the log, or in
a handler inside its open transaction). Meanwhile worker B of the same
projection takes the partitions (embedded: a second worker on the same log;
Kafka: A overran `max.poll.interval.ms` and the group gave everything to B)
and applies the whole stream. When A wakes up, its commit must be rejected,
because the position rows moved past the revision it read: the view stays
exactly-once.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from eventsource import Event, View, Worker
from eventsource.bus.base import LogConsumer, LogMessage
from tests.conftest import unique
from tests.projections.apps import BalancesBase, balances
from tests.projections.conftest import EMBEDDED, KAFKA, Harness
from tests.projections.streams import assert_view_is_fold, populate, read_all

# A kicked-out Kafka member: librdkafka leaves the group once the application
# has not polled for max.poll.interval.ms (which may not be below the session timeout).
ZOMBIE_KAFKA_OPTIONS = {
    "session.timeout.ms": 6000,
    "max.poll.interval.ms": 6000,
    "heartbeat.interval.ms": 500,
}


class HeldAfterPoll:
    """A log consumer that holds the first batch it polls until `go` is set."""

    def __init__(self, inner: LogConsumer, holding: threading.Event, go: threading.Event) -> None:
        self.inner = inner
        self.holding = holding
        self.go = go
        self.held = False

    def poll(self, max_messages: int, timeout: float) -> list[LogMessage]:
        messages = self.inner.poll(max_messages, timeout)
        if messages and not self.held:
            self.held = True
            self.holding.set()
            assert self.go.wait(120)
        return messages

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize(
    ("harness", "pause"),
    [
        (EMBEDDED, "after-poll"),
        pytest.param(KAFKA, "after-poll", marks=[pytest.mark.kafka, pytest.mark.postgres]),
        pytest.param(KAFKA, "in-handler", marks=[pytest.mark.kafka, pytest.mark.postgres]),
    ],
    indirect=["harness"],
)
def test_a_zombie_workers_commit_is_rejected_and_the_view_stays_exactly_once(
    harness: Harness, pause: str, caplog: pytest.LogCaptureFixture
) -> None:
    populate(harness.source, events=3000, accounts=60)
    harness.publish()
    records = read_all(harness.source)
    name = unique("pj_zombie")
    group = unique("pj_zombie_group")
    holding, go = threading.Event(), threading.Event()

    def hold_first(self: BalancesBase, event: Event, view: View) -> None:
        if not holding.is_set():
            view.get(self.balances, event.aggregate_id)  # read inside the open transaction
            holding.set()
            assert go.wait(120)

    zombie_cls = balances(
        harness.context, name, **({"touch": hold_first} if pause == "in-handler" else {})
    )
    log_a = harness.log(group=group, **(ZOMBIE_KAFKA_OPTIONS if harness.kafka_mode else {}))
    if pause == "after-poll":
        log_a = HeldAfterPoll(log_a, holding, go)  # type: ignore[assignment]
    zombie = Worker(zombie_cls(), log_a, engine=harness.views, batch_size=100)
    outcome: list[BaseException] = []

    def run_zombie() -> None:
        try:
            zombie.run(until_caught_up=True)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run_zombie, daemon=True)
    with caplog.at_level(logging.WARNING, logger="eventsource.projections.worker"):
        thread.start()
        assert holding.wait(60), "the zombie never polled a batch"

        successor = Worker(
            balances(harness.context, name)(),
            harness.log(group=group),
            engine=harness.views,
            batch_size=500,
        )
        applied = successor.run(until_caught_up=True)
        successor.close()
        assert applied == len(records)
        assert_view_is_fold(harness.views, records)

        go.set()
        thread.join(90)
    assert not thread.is_alive()
    assert outcome == []
    zombie.close()

    assert zombie.applied == 0, "the zombie committed over its successor"
    assert any(
        "re-reading positions" in r.getMessage() and name in r.getMessage() for r in caplog.records
    )
    assert_view_is_fold(harness.views, records)
