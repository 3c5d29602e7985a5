"""A worker process killed with SIGKILL at random points, again and again.

Each run starts with `eventsource projection run ... --until-caught-up` (a
different batch size each time) and is killed at a random moment after it
committed a batch, so kills land in handlers, in flushes and in commits. The
last run goes to the end. The view must equal the independent fold of every
event exactly once: rows, counts and sums, and the per-process event counter.
"""

from __future__ import annotations

import json
import random

import pytest

from tests.conftest import unique
from tests.projections.conftest import Harness
from tests.projections.streams import (
    WorkerProcess,
    assert_view_is_fold,
    fold,
    kill_repeatedly,
    populate,
    read_all,
    stored_positions,
    topping_up,
    worker_counts,
)

pytestmark = pytest.mark.slow

KILLS = 20
BATCH_SIZES = [17, 50, 100, 250]


def test_a_worker_killed_20_times_applies_every_event_exactly_once(harness: Harness) -> None:
    populate(harness.source, events=30_000, accounts=400, chunk=1000)
    harness.publish()
    name = unique("pj_crash")
    variables = {"PJTEST_NAME": name}
    if harness.kafka_mode:
        # Static membership: a restarted process takes its predecessor's place in
        # the group at once instead of waiting for its session to expire.
        options = {"group.instance.id": unique("pj_crash_member"), "session.timeout.ms": "6000"}
        variables["EVENTSOURCE_KAFKA_CONFIG"] = json.dumps(options)
    env = harness.env(**variables)
    seed = random.randrange(1 << 30)
    sizes = random.Random(seed)

    def start(i: int) -> WorkerProcess:
        return WorkerProcess(
            [
                "projection",
                "run",
                "tests.projections.apps:EnvBalances",
                "--until-caught-up",
                "--batch-size",
                str(sizes.choice(BATCH_SIZES)),
            ],
            env,
            harness.tmp_path / f"worker-{i}.log",
        )

    more = topping_up(harness.source, harness.views, name, harness.publish, ahead=10_000)
    kill_repeatedly(start, harness.views, name, kills=KILLS, seed=seed, top_up=more)
    records = read_all(harness.source)
    applied_before_the_last_run = sum(worker_counts(harness.views).values())
    last = start(KILLS)
    assert last.wait(120) == 0, last.output()

    expected = fold(records)
    assert 0 < applied_before_the_last_run < expected.handled, f"seed {seed}"
    print(f"seed {seed}: {applied_before_the_last_run} of {expected.handled} applied before")
    assert_view_is_fold(harness.views, records)
    assert worker_counts(harness.views) == {"main": expected.handled}
    stored = stored_positions(harness.views, name)
    assert max(last for _, last, _ in stored.values()) == harness.source.head_position()
