"""SIGKILL at chosen points of the commit, not only inside handlers.

A worker process kills itself (SIGKILL: no code of its own runs after) the
Nth time it writes the view's rows, advances its positions, or is about to
commit; on PostgreSQL that is on the commit pipeline's thread, where a
projection's batches commit. Restarted each time, then run to the end, the
view must equal the independent fold of every event, each applied once.
"""

from __future__ import annotations

import signal

import pytest

from tests.conftest import unique
from tests.projections.conftest import Harness
from tests.projections.streams import (
    WorkerProcess,
    assert_view_is_fold,
    fold,
    populate,
    read_events_sql,
    stored_positions,
    worker_counts,
)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("point", ["flush", "positions", "commit"])
def test_a_kill_at_each_point_of_the_commit_loses_and_repeats_nothing(
    harness: Harness, point: str
) -> None:
    populate(harness.source, events=3_000, accounts=60, chunk=500)
    harness.publish()
    name = unique("pj_point")
    commit_thread = "commit-" if harness.kafka_mode else ""
    # Tuned, a projection into PostgreSQL commits on its pipeline's thread:
    # the kills land there.
    tuned = {"EVENTSOURCE_TUNE_INTERPRETER": "true"} if harness.kafka_mode else {}

    def start(i: int, **kill: str) -> WorkerProcess:
        env = harness.env(PJTEST_NAME=name, **tuned, **kill)
        args = ["projection", "run", "tests.projections.apps:EnvBalances", "--batch-size", "97"]
        return WorkerProcess([*args, "--until-caught-up"], env, harness.tmp_path / f"w{i}.log")

    for i, after in enumerate((1, 2, 5)):
        process = start(
            i,
            PJTEST_KILL_AT=point,
            PJTEST_KILL_AFTER=str(after),
            PJTEST_KILL_THREAD=commit_thread,
        )
        code = process.wait(120)
        assert code == -signal.SIGKILL, (
            f"run {i} was not killed at its {point}:\n{process.output()}"
        )
    applied_before = sum(worker_counts(harness.views).values())
    last = start(99)
    assert last.wait(120) == 0, last.output()

    records = read_events_sql(harness.source.engine)
    expected = fold(records)
    assert 0 < applied_before < expected.handled
    assert_view_is_fold(harness.views, records)
    assert worker_counts(harness.views) == {"main": expected.handled}
    stored = stored_positions(harness.views, name)
    assert max(last for _, last, _ in stored.values()) == records[-1].position
