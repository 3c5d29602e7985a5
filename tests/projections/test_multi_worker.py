"""Two worker processes of one projection share a 6-partition topic.

The consumer group spreads the partitions over both; positions and view
rows live in one PostgreSQL database. Rows of `pj_owners` sum deposits of
accounts in every partition, so both processes write them (the shared mode:
such rows are read locked in each batch). One process is killed with
SIGKILL half-way; the other takes over its partitions and the view ends
exactly-once, with the events split between the two.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import unique
from tests.projections.conftest import KAFKA, Harness
from tests.projections.streams import (
    WorkerProcess,
    assert_view_is_fold,
    fold,
    populate,
    read_all,
    stored_positions,
    wait_until,
    worker_counts,
)

pytestmark = [pytest.mark.slow]


@pytest.mark.parametrize("harness", [KAFKA], indirect=True)
def test_two_workers_share_the_partitions_and_survive_one_being_killed(
    harness: Harness,
) -> None:
    populate(harness.source, events=12_000, accounts=300, chunk=1000)
    harness.publish()
    records = read_all(harness.source)
    expected = fold(records).handled
    name = unique("pj_pair")
    options = json.dumps({"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"})

    def start(worker: str) -> WorkerProcess:
        env = harness.env(
            PJTEST_NAME=name,
            PJTEST_WORKER=worker,
            PJTEST_SLOW="0.0005",
            EVENTSOURCE_KAFKA_CONFIG=options,
        )
        return WorkerProcess(
            ["projection", "run", "tests.projections.apps:EnvBalances", "--batch-size", "100"],
            env,
            harness.tmp_path / f"{worker}.log",
        )

    first, second = start("first"), start("second")
    try:
        wait_until(
            lambda: len(worker_counts(harness.views)) == 2 or not first.alive(),
            60,
            "both workers to commit a batch",
        )
        first.kill()
        at_kill = worker_counts(harness.views)
        assert set(at_kill) == {"first", "second"}, second.output()
        assert sum(at_kill.values()) < expected, "the stream ended before the kill"

        wait_until(
            lambda: sum(worker_counts(harness.views).values()) >= expected or not second.alive(),
            120,
            "the survivor to apply the rest",
            interval=0.1,
        )
        assert second.alive(), second.output()
        second.terminate()
        assert second.wait(30) == 0, second.output()
    finally:
        first.kill()
        second.kill()

    counts = worker_counts(harness.views)
    assert sum(counts.values()) == expected
    assert counts["first"] == at_kill["first"]  # what it committed before the kill stays
    assert counts["second"] > at_kill["second"]
    assert_view_is_fold(harness.views, records)
    stored = stored_positions(harness.views, name)
    assert len(stored) == 6
    assert max(last for _, last, _ in stored.values()) == harness.source.head_position()
