"""Status an operator can alert on: `running` only while a worker beats, who holds
what, missing topics, and lag counted in events."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest

from eventsource import Repository
from tests.conftest import ROOT, unique
from tests.projections.apps import PjAccount
from tests.projections.conftest import Harness
from tests.projections.streams import WorkerProcess, populate, progress, wait_until

APP = "tests.projections.apps:EnvBalances"


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventsource", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def report(env: dict[str, str]) -> dict[str, Any]:
    shown = cli(env, "projection", "status", APP, "--json")
    assert shown.returncode == 0, shown.stderr
    [state] = json.loads(shown.stdout)
    return state  # type: ignore[no-any-return]


def status_env(harness: Harness, name: str, **extra: str) -> dict[str, str]:
    stores = {"EVENTSOURCE_STORES": json.dumps({harness.context: harness.source_url})}
    return harness.env(PJTEST_NAME=name, EVENTSOURCE_HEARTBEAT_SECONDS="1.0", **stores, **extra)


@pytest.mark.slow
def test_a_killed_worker_is_unresponsive_and_a_running_one_names_itself(harness: Harness) -> None:
    populate(harness.source, events=400, accounts=20)
    harness.publish()
    name = unique("pj_alive")
    env = status_env(harness, name, EVENTSOURCE_WORKER_NAME="worker-a", PJTEST_SLOW="0.01")
    # Small batches: the heartbeat is written between batches, and a slow
    # batch longer than three heartbeats rightly reads as unresponsive.
    worker = WorkerProcess(
        ["projection", "run", APP, "--batch-size", "10"], env, harness.tmp_path / "w.log"
    )
    try:
        wait_until(lambda: progress(harness.views, name) > 0, 60, "a first batch")
        state = report(env)
        assert state["status"] == "running", state
        [member] = state["members"]  # the row is written with the status, before any batch
        assert (member["name"], member["pid"]) == ("worker-a", worker.pid)
        expected = [f"{harness.context}.account[{p}]" for p in range(len(state["partitions"]))]
        # The partitions it holds come with the next heartbeat after they are assigned.
        wait_until(lambda: report(env)["members"][0]["partitions"] == expected, 30, "partitions")
    finally:
        worker.kill()
    # SIGKILLed: no code of its own ran; within three heartbeats it is unresponsive.
    killed_at = time.monotonic()
    wait_until(lambda: report(env)["status"] == "unresponsive", 30, "unresponsive")
    assert time.monotonic() - killed_at < 10
    state = report(env)
    assert state["unresponsive_since"] is not None
    shown = cli(env, "projection", "status", APP)
    assert f"unresponsive since {state['unresponsive_since'][:19]}" in shown.stdout

    # A clean stop leaves no stale row behind: it says stopped.
    again = cli(env, "projection", "run", APP, "--until-caught-up")
    assert again.returncode == 0, again.stderr
    state = report(env)
    assert (state["status"], state["members"]) == ("stopped", [])


def test_lag_is_counted_in_events(harness: Harness) -> None:
    populate(harness.source, events=300, accounts=12)
    harness.publish()
    name = unique("pj_lag")
    env = status_env(harness, name)
    assert cli(env, "db", "upgrade").returncode == 0
    assert report(env)["lag_events"] == len(harness.source.read_log(0, 100_000))

    assert cli(env, "projection", "run", APP, "--until-caught-up").returncode == 0
    assert report(env)["lag_events"] == 0
    # Ten more events (two kinds of aggregate ids, all partitions): ten behind,
    # whatever the transaction markers do to the offsets.
    repository = Repository(harness.source, PjAccount)
    accounts = [repository.get(f"a-{i}") for i in range(10)]
    for account in accounts:
        account.note("later")
    repository.save(*accounts)
    harness.publish()
    assert report(env)["lag_events"] == 10


@pytest.mark.kafka
@pytest.mark.postgres
@pytest.mark.parametrize("harness", ["kafka-postgres"], indirect=True)
def test_a_topic_that_does_not_exist_is_reported_missing(harness: Harness) -> None:
    name = unique("pj_missing")
    env = status_env(harness, name, PJTEST_CONTEXT=unique("nosuchctx"))
    assert cli(env, "db", "upgrade").returncode == 0
    state = report(env)
    assert state["missing_topics"] == [f"{env['PJTEST_CONTEXT']}.account"]
    shown = cli(env, "projection", "status", APP)
    assert "is missing: nothing relayed to it yet, or a misspelled name" in shown.stdout
    # A rebuild would swap an empty view in over the live one: it refuses.
    rebuilt = cli(env, "projection", "rebuild", APP)
    assert rebuilt.returncode == 1
    assert "do not exist on the log" in rebuilt.stderr


@pytest.mark.slow
@pytest.mark.parametrize("harness", ["embedded-sqlite"], indirect=True)
def test_status_says_running_after_a_rebuild_while_the_live_worker_runs(harness: Harness) -> None:
    populate(harness.source, events=300, accounts=10)
    name = unique("pj_rebuilt")
    env = status_env(harness, name)
    # Small batches: the heartbeat is written between batches, and a slow
    # batch longer than three heartbeats rightly reads as unresponsive.
    worker = WorkerProcess(
        ["projection", "run", APP, "--batch-size", "10"], env, harness.tmp_path / "w.log"
    )
    try:
        wait_until(lambda: progress(harness.views, name) > 0, 60, "a first batch")
        rebuilt = cli(env, "projection", "rebuild", APP)
        assert rebuilt.returncode == 0, rebuilt.stderr
        wait_until(lambda: report(env)["status"] == "running", 30, "running")
        assert report(env)["recorded_status"] in ("rebuilt", "running")
    finally:
        worker.kill()
