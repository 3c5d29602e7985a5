"""The two deployments the projection tests run on, behind one interface.

* `embedded-sqlite`: the source store is a SQLite file, workers read its SQL
  log, and the views live in another SQLite file;
* `kafka-postgres`: the source store is a PostgreSQL database, a relay
  publishes it to Kafka (6 partitions per topic), workers read Kafka, and the
  views live in another PostgreSQL database.

A test module builds one with `open_rig(kind, request)` from a fixture
parametrised over `RIGS`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from eventsource import EventStore, StoredEvent
from eventsource.bus.admin import TopicAdmin
from eventsource.bus.base import LogConsumer
from eventsource.bus.config import KafkaConfig
from eventsource.bus.kafka import KafkaLogConsumer
from eventsource.bus.relay import Relay
from eventsource.bus.sqllog import SqlLogConsumer
from eventsource.projections.base import Consumer
from eventsource.projections.positions import all_positions
from eventsource.projections.wait import wait_for
from tests.conftest import KAFKA_SERVERS, ROOT, unique

PARTITIONS = 6
RIGS = [
    "embedded-sqlite",
    pytest.param("kafka-postgres", marks=[pytest.mark.kafka, pytest.mark.postgres]),
]


class Rig:
    """A source store, the log that carries it, and a views database."""

    def __init__(
        self,
        kind: str,
        store: EventStore,
        views_store: EventStore,
        kafka: KafkaConfig | None,
    ) -> None:
        self.kind = kind
        self.store = store
        self.context = store.context
        self.views_store = views_store
        self.views: Engine = views_store.engine
        self.kafka = kafka
        self.partitions = PARTITIONS if kafka is not None else 1
        self._consumers: list[LogConsumer] = []
        self._relay_stop = threading.Event()
        self._relay_thread: threading.Thread | None = None
        self.relay_errors: list[BaseException] = []

    @property
    def is_kafka(self) -> bool:
        return self.kafka is not None

    def log(self) -> LogConsumer:
        """A fresh log consumer (on Kafka, in a consumer group of its own)."""
        consumer: LogConsumer
        if self.kafka is not None:
            consumer = KafkaLogConsumer(self.kafka, group_id=unique("rbgroup"))
        else:
            consumer = SqlLogConsumer({self.context: self.store})
        self._consumers.append(consumer)
        return consumer

    def publish(self) -> None:
        """Make everything stored so far readable on the log (relay it to Kafka)."""
        if self.kafka is not None:
            with Relay(self.store, self.kafka, batch_size=2000) as relay:
                relay.run(until_caught_up=True)

    def start_relay(self) -> None:
        """Relay continuously in a thread (Kafka) until the rig closes."""
        if self.kafka is None or self._relay_thread is not None:
            return
        kafka = self.kafka

        def run() -> None:
            try:
                with Relay(self.store, kafka, batch_size=500, poll_interval=0.02) as relay:
                    relay.run(stop=self._relay_stop)
            except BaseException as exc:
                self.relay_errors.append(exc)

        self._relay_thread = threading.Thread(target=run, name="relay", daemon=True)
        self._relay_thread.start()

    def stop_relay(self) -> None:
        self._relay_stop.set()
        if self._relay_thread is not None:
            self._relay_thread.join(60)
            self._relay_thread = None
        self._relay_stop = threading.Event()
        assert not self.relay_errors, self.relay_errors

    def wait(self, cls: type[Consumer], position: int, timeout: float = 60.0) -> None:
        """Until `cls` has applied the source store up to `position`."""
        wait_for(
            cls,
            position,
            store=self.store,
            views=self.views,
            partitions=self.partitions,
            timeout=timeout,
        )

    def records(self) -> list[StoredEvent]:
        """Every record of the source store, in global order."""
        out: list[StoredEvent] = []
        while True:
            page = self.store.read_log(out[-1].position if out else 0, 5000)
            if not page:
                return out
            out.extend(page)

    def rows(self, table: str, key: str) -> dict[str, dict[str, Any]]:
        """A view table's rows by key, as plain values (ints for integers)."""
        with self.views.connect() as conn:
            found = conn.execute(text(f"SELECT * FROM {table}")).mappings().all()
        return {str(row[key]): {k: _plain(v) for k, v in row.items() if k != key} for row in found}

    def stored_positions(self, name: str) -> dict[tuple[str, int], tuple[int, int]]:
        """`(topic, partition) -> (offset, last_position)` stored for `name`."""
        with self.views.connect() as conn:
            stored = all_positions(conn, name)
        return {tp: (p.offset, p.last_position) for tp, p in stored.items()}

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of an `eventsource` process working on this rig."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSOURCE_")}
        env.update(
            {
                "PYTHONPATH": str(ROOT),
                "EVENTSOURCE_DATABASE_URL": self.views_store.engine.url.render_as_string(
                    hide_password=False
                ),
                "EVENTSOURCE_CONTEXT": self.views_store.context,
                "EVENTSOURCE_STORES": json.dumps(
                    {self.context: self.store.engine.url.render_as_string(hide_password=False)}
                ),
                "RBTEST_CONTEXT": self.context,
            }
        )
        if self.kafka is not None:
            env["EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS"] = self.kafka.bootstrap_servers
            env["EVENTSOURCE_TOPIC_PARTITIONS"] = str(PARTITIONS)
            # A killed member leaves its group after this long, not 10 s.
            env["EVENTSOURCE_KAFKA_CONFIG"] = json.dumps(
                {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}
            )
        env.update(extra)
        return env

    def cli(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run `python -m eventsource <args>` to completion."""
        return subprocess.run(
            [sys.executable, "-m", "eventsource", *args],
            env=env or self.env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def spawn(self, *args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        """Start `python -m eventsource <args>` in the background, output to `log`."""
        with log.open("ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "eventsource", *args],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def close(self) -> None:
        self.stop_relay()
        for consumer in self._consumers:
            consumer.close()
        self.store.close()
        self.views_store.close()
        if self.kafka is not None:
            admin = TopicAdmin(self.kafka)
            admin.delete(list(admin.list_topics(f"{self.context}.")))


@contextmanager
def open_rig(kind: str, database_url_factory: Callable[..., str]) -> Iterator[Rig]:
    backend = "postgres" if kind == "kafka-postgres" else "sqlite"
    kafka = None
    if kind == "kafka-postgres":
        if not KAFKA_SERVERS:
            pytest.fail("EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS is not set")
        kafka = KafkaConfig(KAFKA_SERVERS, partitions=PARTITIONS)
    store = EventStore(database_url_factory(backend), context=unique("rbsrc"))
    store.create_schema()
    views = EventStore(database_url_factory(backend), context=unique("rbviews"))
    views.create_schema()
    rig = Rig(kind, store, views, kafka)
    try:
        yield rig
    finally:
        rig.close()


class Background:
    """Runs a function in a thread and re-raises its error in `join`."""

    def __init__(self, target: Callable[[], object], name: str) -> None:
        self.error: BaseException | None = None
        self.result: object = None

        def run() -> None:
            try:
                self.result = target()
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=run, name=name, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 60.0) -> object:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"{self.thread.name} still running after {timeout} s"
        if self.error is not None:
            raise self.error
        return self.result


def eventually(check: Callable[[], bool], *, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


def _plain(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def positions_sum(rows: Sequence[dict[str, Any]], column: str) -> int:
    return sum(int(r[column]) for r in rows)
