"""`kill -9` the relay at random moments: Kafka still ends up with every event
exactly once, in order."""

from __future__ import annotations

import os
import random
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from eventsource import EventStore
from tests.bus.children import Child, cli_env
from tests.bus.model import judge, populate, read_committed

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

EVENTS = 10_000
KILLS = 7
RESUMED = re.compile(r"resumes after global position (\d+)")


def test_a_relay_killed_at_random_moments_publishes_everything_exactly_once(
    tmp_path: Path, kafka_context: str, kafka_servers: str
) -> None:
    url = f"sqlite:///{tmp_path / 'orders.db'}"
    store = EventStore(url, context=kafka_context)
    store.create_schema()
    try:
        records = populate(store, orders=1000, items=8, customers=1000)
        assert len(records) == EVENTS
        head = records[-1].position
    finally:
        store.close()
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    command = [sys.executable, "-m", "eventsource", "relay", "run", "--once"]
    # Small transactions: 500 of them, more than the kills' windows can finish.
    command += ["--batch-size", "20", "--url", url, "--context", kafka_context]

    resumed: list[int] = []
    kills = 0
    for attempt in range(KILLS):
        child = Child(command, cli_env(kafka_servers))
        try:
            if attempt % 2:
                # Somewhere in start-up, fencing, recovery or the first batches.
                time.sleep(rng.uniform(0.2, 1.5))
            else:
                child.wait_for("resumes after global position")
                time.sleep(rng.uniform(0.02, 0.35))
            if child.process.poll() is None:
                os.kill(child.process.pid, signal.SIGKILL)
                kills += 1
        finally:
            code, _, err = child.finish()
        resumed += [int(p) for p in RESUMED.findall(err)]
        if code == 0:
            break  # it finished before the kill
        assert code == -signal.SIGKILL, err

    final = Child(command, cli_env(kafka_servers))
    code, out, err = final.finish(timeout=120)
    assert code == 0, err
    resumed += [int(p) for p in RESUMED.findall(err)]
    assert f"Kafka holds the store up to position {head}" in out

    print(f"seed {seed}: {kills} kills; restarts resumed after positions {resumed}")
    assert kills >= 5, f"only {kills} kills landed (seed {seed})"
    assert resumed == sorted(resumed), resumed
    assert len({p for p in resumed if 0 < p < head}) >= 3, (
        f"the kills did not land mid-stream: {resumed} (seed {seed})"
    )

    topics = [f"{kafka_context}.order", f"{kafka_context}.customer"]
    verdict = judge(records, read_committed(kafka_servers, topics))
    assert verdict.exactly_once, f"{verdict} (seed {seed})"
    assert verdict.delivered == EVENTS
