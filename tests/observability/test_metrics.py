"""Prometheus metrics and health, scraped from running workers and relays."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from eventsource import Worker
from eventsource.observability.metrics import WorkerMetrics
from tests.bus.children import cli_env
from tests.conftest import ROOT, unique
from tests.projections.apps import balances
from tests.projections.conftest import Harness
from tests.projections.streams import WorkerProcess, clean_env, populate

APP = "tests.projections.apps:EnvBalances"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def sample(port: int, name: str, **labels: str) -> float | None:
    """One sample of the process's metrics, or None while it is not there yet."""
    try:
        _, text = get(port, "/metrics")
    except OSError:
        return None
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return found.value
    return None


def eventually(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_running_worker_serves_metrics_that_move_with_the_events(harness: Harness) -> None:
    count = populate(harness.source, events=400, accounts=20)
    harness.publish()
    name = unique("pj_metrics")
    port = free_port()
    env = harness.env(PJTEST_NAME=name, EVENTSOURCE_HEARTBEAT_SECONDS="0.5")
    worker = WorkerProcess(
        ["projection", "run", APP, "--batch-size", "50", "--metrics-port", str(port)],
        env,
        harness.tmp_path / "worker.log",
    )
    try:
        applied = "eventsource_events_applied_total"
        eventually(lambda: sample(port, applied, projection=name) == count, "every event applied")
        eventually(
            lambda: sample(port, "eventsource_lag_messages", projection=name) == 0, "lag zero"
        )
        batches = sample(port, "eventsource_batches_total", projection=name)
        assert batches is not None
        assert batches >= count / 50
        assert sample(port, "eventsource_batch_duration_seconds_count", projection=name) == batches
        assert sample(port, "eventsource_worker_starts_total", projection=name) == 1
        assert sample(port, "eventsource_dead_letters", projection=name, status="parked") == 0
        assert get(port, "/healthz")[0] == 200
        status, body = get(port, "/readyz")
        assert status == 200, body
        assert name in body

        more = populate(harness.source, events=100, accounts=5, prefix="more", seed=4)
        harness.publish()
        eventually(lambda: sample(port, applied, projection=name) == count + more, "the new events")
        assert get(port, "/nothing")[0] == 404
    finally:
        worker.kill()


@pytest.mark.kafka
def test_a_running_relay_serves_its_metrics(
    kafka_servers: str, tmp_path: object, database_url_factory: Callable[..., str]
) -> None:
    from pathlib import Path

    from eventsource import EventStore
    from eventsource.bus.admin import TopicAdmin
    from eventsource.bus.config import KafkaConfig

    url = database_url_factory("sqlite")
    context = unique("mtrelay")
    with EventStore(url, context=context) as store:
        store.create_schema()
        count = populate(store, events=300, accounts=10)
    port = free_port()
    env = cli_env(kafka_servers) | {"EVENTSOURCE_HEARTBEAT_SECONDS": "0.5"}
    relay = WorkerProcess(
        ["relay", "run", "--url", url, "--context", context, "--metrics-port", str(port)],
        env,
        Path(str(tmp_path)) / "relay.log",
    )
    try:
        published = "eventsource_relay_events_published_total"
        eventually(lambda: sample(port, published, context=context) == count, "all published")
        eventually(
            lambda: sample(port, "eventsource_relay_lag_events", context=context) == 0, "lag 0"
        )
        committed = sample(port, "eventsource_relay_transactions_committed_total", context=context)
        assert committed is not None
        assert committed >= 1
        assert get(port, "/readyz")[0] == 200
    finally:
        relay.kill()
        admin = TopicAdmin(KafkaConfig(kafka_servers))
        admin.delete(admin.list_topics(f"{context}."))


@pytest.mark.parametrize("harness", ["embedded-sqlite"], indirect=True)
def test_an_application_registers_the_metrics_on_its_own_registry(harness: Harness) -> None:
    count = populate(harness.source, events=120, accounts=6)
    registry = CollectorRegistry()
    cls = balances(harness.context, unique("pj_own_registry"))
    worker = Worker(
        cls(), harness.log(), engine=harness.views, batch_size=40, metrics=WorkerMetrics(registry)
    )
    try:
        worker.run(until_caught_up=True)
    finally:
        worker.close()
    value = registry.get_sample_value("eventsource_events_applied_total", {"projection": cls.name})
    assert value == count


def test_a_worker_that_cannot_reach_kafka_says_it_is_retrying(tmp_path: Path) -> None:
    # Started while the broker is away (nothing listens on its port): live,
    # not ready, and the metrics and /readyz say why, until it comes back.
    port = free_port()
    env = clean_env(
        EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",
        EVENTSOURCE_HEARTBEAT_SECONDS="0.5",
    )
    worker = WorkerProcess(
        [
            "projection",
            "run",
            "sample_app.payments.views:DeclinedCards",
            "--url",
            f"sqlite:///{tmp_path / 'payments.db'}",
            "--context",
            "payments",
            "--metrics-port",
            str(port),
        ],
        env,
        tmp_path / "worker.log",
    )
    name = "payments.declined_cards"
    try:
        eventually(
            lambda: sample(port, "eventsource_retrying", projection=name) == 1, "retrying is 1"
        )
        status, body = get(port, "/readyz")
        assert status == 503, body
        assert f'"{name}":"retrying since ' in body
        assert get(port, "/healthz")[0] == 200
        time.sleep(2)  # heartbeats pass: still not back
        assert sample(port, "eventsource_retrying", projection=name) == 1
        assert "back after" not in (tmp_path / "worker.log").read_text()
    finally:
        worker.kill()


def test_a_metrics_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        ran = subprocess.run(
            [
                sys.executable,
                "-m",
                "eventsource",
                "projection",
                "run",
                "sample_app.orders.views:OrderSummary",
                "--url",
                f"sqlite:///{tmp_path}/o.db",
                "--metrics-port",
                str(port),
            ],
            env=clean_env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert ran.returncode == 1
    assert ran.stderr.strip().splitlines()[-1] == (
        f"error: cannot serve metrics on 127.0.0.1:{port}: Address already in use; choose"
        " another --metrics-port (0 picks a free one) or --metrics-host"
    )
    assert "Traceback" not in ran.stderr
