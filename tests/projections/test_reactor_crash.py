"""A reactor process killed with SIGKILL at random points reacts to each event once.

Its new events and its positions commit in one transaction, so a kill
either keeps a batch's reactions and its positions, or neither: after the
kills and a final run to the end, every large deposit in the source has
exactly one flag in the reactor's own store, caused by it.
"""

from __future__ import annotations

import json
import random

import pytest

from tests.conftest import unique
from tests.projections.conftest import Harness
from tests.projections.streams import (
    WorkerProcess,
    assert_reacted_exactly_once,
    kill_repeatedly,
    large_deposits,
    populate,
    reactions,
    read_all,
    topping_up,
)

pytestmark = pytest.mark.slow

KILLS = 12


def test_a_reactor_killed_at_random_points_reacts_exactly_once(harness: Harness) -> None:
    populate(harness.source, events=15_000, accounts=200, chunk=1000)
    harness.publish()
    name = unique("pj_reactor_crash")
    variables = {"PJTEST_REACTOR_NAME": name}
    if harness.kafka_mode:
        options = {"group.instance.id": unique("pj_rcrash_member"), "session.timeout.ms": "6000"}
        variables["EVENTSOURCE_KAFKA_CONFIG"] = json.dumps(options)
    env = harness.env(**variables)
    seed = random.randrange(1 << 30)
    sizes = random.Random(seed)

    def start(i: int) -> WorkerProcess:
        batch = str(sizes.choice([10, 40, 100]))
        return WorkerProcess(
            [
                "projection",
                "run",
                "tests.projections.apps:EnvAudits",
                "--until-caught-up",
                "--batch-size",
                batch,
            ],
            env,
            harness.tmp_path / f"reactor-{i}.log",
        )

    more = topping_up(harness.source, harness.views, name, harness.publish, ahead=6000)
    kill_repeatedly(start, harness.views, name, kills=KILLS, seed=seed, top_up=more)
    records = read_all(harness.source)
    own = harness.own_store()
    reacted_before_the_last_run = len(reactions(own))
    last = start(KILLS)
    assert last.wait(120) == 0, last.output()

    wanted = len(large_deposits(records))
    assert 0 < reacted_before_the_last_run < wanted, f"seed {seed}"
    print(f"seed {seed}: {reacted_before_the_last_run} of {wanted} reactions before")
    assert_reacted_exactly_once(records, own)
