"""Signals always win, and a service that cannot be reached is said once.

With a broker that is not there (`127.0.0.1:1`), one-shot commands give up
within their timeout with one line, long-running ones stop within seconds
of SIGTERM while they retry, and the log says it once, not per attempt.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eventsource import EventStore, Repository
from tests.cli.conftest import Run, clean_env, error_line
from tests.projections.apps import PjAccount

NOWHERE = "127.0.0.1:1"


def a_store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'orders.db'}"
    with EventStore(url, context="orders") as store:
        store.create_schema()
        Repository(store, PjAccount).save(PjAccount.open("a-1", "owner"))
    return url


def test_relay_once_against_an_unreachable_broker_gives_up_within_its_timeout(
    run_cli: Run, tmp_path: Path
) -> None:
    url = a_store(tmp_path)
    env = {"EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS": NOWHERE, "EVENTSOURCE_CONTEXT": "orders"}
    started = time.monotonic()
    result = run_cli("relay", "run", "--once", "--timeout", "4", "--url", url, env=env)
    took = time.monotonic() - started
    line = error_line(result)
    assert "cannot list Kafka topics" in line
    assert took < 20, took
    # Said once, not once per attempt.
    warnings = [x for x in result.stderr.splitlines() if " WARNING " in x or " ERROR " in x]
    assert len(warnings) <= 3, result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("relay", "run"),
        ("projection", "run", "tests.projections.apps:EnvBalances"),
    ],
)
def test_a_long_running_command_stops_within_seconds_of_sigterm_while_it_retries(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    url = a_store(tmp_path)
    env = clean_env(
        EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS=NOWHERE,
        EVENTSOURCE_CONTEXT="orders",
        EVENTSOURCE_DATABASE_URL=url,
        PJTEST_CONTEXT="orders",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "eventsource", *args],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(4)  # connecting and retrying by now
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGTERM)
    asked = time.monotonic()
    try:
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert time.monotonic() - asked < 5, err
    assert "Traceback" not in err
    noisy = [x for x in err.splitlines() if " WARNING " in x or " ERROR " in x]
    assert len(noisy) <= 4, err
