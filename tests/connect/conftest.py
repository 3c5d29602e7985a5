"""Fixtures of the Kafka Connect tests: Apache Kafka's own Connect worker
(standalone mode), started once per test session by `scripts/services.sh
connect-up` in a folder and on a port of the session's own, stopped at the
session's end (and by the script's watcher should the session die first), and
connectors that are removed after each test."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from eventsource import EventStore
from eventsource.bus.admin import TopicAdmin
from eventsource.bus.config import KafkaConfig
from tests.conftest import ROOT, SERVICES_SCRIPT_ENV, unique


class ConnectError(Exception):
    """The worker answered a request with an error status."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"Kafka Connect answered {status}: {body[:2000]}")
        self.status = status


class Connect:
    """The REST API of a Kafka Connect worker: the calls the tests make."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                text = answer.read().decode()
        except urllib.error.HTTPError as exc:
            raise ConnectError(exc.code, exc.read().decode(errors="replace")) from None
        return json.loads(text) if text else None

    def put(self, name: str, config: dict[str, str]) -> None:
        """Create the connector, or replace its configuration."""
        self.request("PUT", f"/connectors/{name}/config", config)

    def status(self, name: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.request("GET", f"/connectors/{name}/status")
        return answer

    def wait_running(self, name: str, *, timeout: float = 60.0) -> None:
        """Wait until the connector and its tasks (one at least) run; a task that
        fails on the way fails the test, with the worker's stack trace."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self._status_when_known(name)
            tasks = status.get("tasks", [])
            for task in tasks:
                if task["state"] == "FAILED":
                    pytest.fail(f"connector {name}'s task failed:\n{task.get('trace', '')[:3000]}")
            states = {task["state"] for task in tasks}
            if status.get("connector", {}).get("state") == "RUNNING" and states == {"RUNNING"}:
                return
            time.sleep(0.2)
        pytest.fail(f"connector {name} is not running after {timeout:.0f} s: {status}")

    def _status_when_known(self, name: str) -> dict[str, Any]:
        try:
            return self.status(name)
        except ConnectError as exc:
            if exc.status == 404:  # until the worker has read the new configuration
                return {}
            raise

    def delete(self, name: str) -> None:
        try:
            self.request("DELETE", f"/connectors/{name}")
        except ConnectError as exc:
            if exc.status != 404:
                raise


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def connect(kafka_servers: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Connect]:
    """The session's own Connect worker, working with the test broker."""
    port = free_port()
    env = {
        **os.environ,
        **SERVICES_SCRIPT_ENV,
        "EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS": kafka_servers,
        "EVENTSOURCE_CONNECT_DIR": str(tmp_path_factory.mktemp("connect")),
        "EVENTSOURCE_CONNECT_PORT": str(port),
        # Should this process die before its clean-up, the worker stops too.
        "EVENTSOURCE_CONNECT_OWNER_PID": str(os.getpid()),
    }
    started = time.monotonic()
    connect_script("connect-up", env, timeout=600)  # the first run fetches the jars
    print(f"Kafka Connect ready after {time.monotonic() - started:.1f} s", file=sys.stderr)
    try:
        yield Connect(f"http://127.0.0.1:{port}")
    finally:
        connect_script("connect-down", env, timeout=60)


def connect_script(command: str, env: dict[str, str], *, timeout: float) -> None:
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "services.sh"), command],
        check=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=env,
    )


@pytest.fixture
def create_connector(connect: Connect) -> Iterator[Callable[[str, dict[str, str]], str]]:
    """`create_connector(prefix, config)`: a connector of a unique name, deleted
    after the test; returns the name."""
    names: list[str] = []

    def create(prefix: str, config: dict[str, str]) -> str:
        name = unique(prefix)
        connect.put(name, config)
        names.append(name)
        return name

    yield create
    for name in names:
        connect.delete(name)


@pytest.fixture
def kafka_config(kafka_servers: str) -> KafkaConfig:
    """The test broker, with 3 partitions per topic the relay creates."""
    return KafkaConfig(kafka_servers, partitions=3)


@pytest.fixture
def kafka_context(kafka_config: KafkaConfig) -> Iterator[str]:
    """A bounded context of this test alone; its topics are deleted after."""
    context = unique("cn")
    yield context
    admin = TopicAdmin(kafka_config)
    admin.delete(admin.list_topics(f"{context}."))


@pytest.fixture
def sqlite_store(
    kafka_context: str, database_url_factory: Callable[..., str]
) -> Iterator[EventStore]:
    """A migrated SQLite store of the test's context."""
    store = EventStore(database_url_factory("sqlite"), context=kafka_context)
    store.create_schema()
    yield store
    store.close()


def wait_for_commits(servers: str, group: str, ends: dict[tuple[str, int], int]) -> None:
    """Wait until consumer group `group` has committed at least `ends[topic, partition]`
    on each partition: a sink connector has then flushed everything before it."""
    consumer = Consumer({"bootstrap.servers": servers, "group.id": group})
    deadline = time.monotonic() + 60
    try:
        while True:
            wanted = [TopicPartition(topic, partition) for topic, partition in sorted(ends)]
            committed = {
                (tp.topic, tp.partition): tp.offset for tp in consumer.committed(wanted, 10)
            }
            if all(committed[where] >= end for where, end in ends.items()):
                return
            assert time.monotonic() < deadline, f"group {group} committed {committed}, not {ends}"
            time.sleep(0.2)
    finally:
        consumer.close()
