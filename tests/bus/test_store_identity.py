"""A store has an identity: a relay on the wrong database is refused before it
fences the live relay, and a deliberate move to a new database is a command."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from eventsource import EventStore
from eventsource.bus.config import KafkaConfig
from eventsource.bus.relay import Relay
from eventsource.errors import StoreMismatch
from tests.bus.children import cli_env
from tests.bus.model import judge, populate, read_all, read_committed
from tests.bus.test_relay import on_kafka, topics_of, wait_until
from tests.conftest import ROOT

pytestmark = pytest.mark.kafka


class LiveRelay:
    """The healthy relay of the real store, relaying in a thread until stopped."""

    def __init__(self, store: EventStore, kafka: KafkaConfig) -> None:
        self.stop = threading.Event()
        self.relay = Relay(store, kafka, batch_size=20, poll_interval=0.02, stop=self.stop)
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name="live-relay")
        self.thread.start()

    def _run(self) -> None:
        try:
            self.relay.run()
        except BaseException as exc:
            self.errors.append(exc)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the live relay is still running"
        self.relay.close()


def relay_cli(url: str, context: str, servers: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventsource", "relay", *args, "--url", url, "--context", context],
        cwd=ROOT,
        env=cli_env(servers),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_relay_on_the_wrong_database_is_refused_without_fencing_the_live_one(
    tmp_path: Path,
    kafka_context: str,
    kafka_config: KafkaConfig,
    kafka_servers: str,
    sqlite_store_factory: Callable[..., EventStore],
) -> None:
    real = sqlite_store_factory(context=kafka_context)
    first = populate(real, orders=6, items=2, customers=2)
    live = LiveRelay(real, kafka_config)
    try:
        wait_until(lambda: on_kafka(kafka_servers, real) == len(first))
        # A mistyped URL: a fresh, empty store with the real context's name.
        typo_url = f"sqlite:///{tmp_path / 'typo.db'}"
        with EventStore(typo_url, context=kafka_context) as typo:
            typo.create_schema()
            with Relay(typo, kafka_config) as wrong, pytest.raises(StoreMismatch) as refused:
                wrong.start()
        assert "ends at position 0: it is not the store that wrote them" in str(refused.value)
        assert "nothing was fenced" in str(refused.value)
        # The command says it in one line, and exits 1.
        shown = relay_cli(typo_url, kafka_context, kafka_servers, "run", "--once")
        assert shown.returncode == 1
        assert "nothing was fenced" in shown.stderr
        # Another store that has events of its own (more than Kafka holds) is refused too.
        other = sqlite_store_factory(context=kafka_context)
        populate(other, orders=20, items=2, customers=2, prefix="other-")
        with Relay(other, kafka_config) as wrong, pytest.raises(StoreMismatch) as foreign:
            wrong.start()
        assert f"written by store {real.identity()}" in str(foreign.value)

        # The live relay was never fenced: it goes on publishing.
        more = populate(real, orders=3, items=1, customers=1, prefix="more-")
        wait_until(lambda: on_kafka(kafka_servers, real) == len(first) + len(more))
    finally:
        live.close()
    assert live.errors == []
    verdict = judge(read_all(real), read_committed(kafka_servers, topics_of(real)))
    assert verdict.exactly_once, verdict


def test_a_context_moves_to_a_new_database_with_relay_adopt(
    tmp_path: Path, kafka_context: str, kafka_config: KafkaConfig, kafka_servers: str
) -> None:
    old_url = f"sqlite:///{tmp_path / 'old.db'}"
    with EventStore(old_url, context=kafka_context) as old:
        old.create_schema()
        populate(old, orders=5, items=2, customers=2)
        with Relay(old, kafka_config) as relay:
            relay.run(until_caught_up=True)
        old_id = old.identity()
    # The new database: the same events, copied, under an identity of its own.
    new_path = tmp_path / "new.db"
    new_path.write_bytes((tmp_path / "old.db").read_bytes())
    new_url = f"sqlite:///{new_path}"
    with EventStore(new_url, context=kafka_context) as new:
        new.adopt_identity("a-fresh-store-id")

    refused = relay_cli(new_url, kafka_context, kafka_servers, "run", "--once")
    assert refused.returncode == 1
    assert f"written by store {old_id}" in refused.stderr
    assert "eventsource relay adopt" in refused.stderr

    adopted = relay_cli(new_url, kafka_context, kafka_servers, "adopt", "--yes")
    assert adopted.returncode == 0, adopted.stderr
    assert f"now carries the identity {old_id}" in adopted.stdout
    with EventStore(new_url, context=kafka_context) as new:
        assert new.identity() == old_id
        populate(new, orders=2, items=1, customers=1, prefix="moved-")
    ran = relay_cli(new_url, kafka_context, kafka_servers, "run", "--once")
    assert ran.returncode == 0, ran.stderr
    with EventStore(new_url, context=kafka_context) as new:
        verdict = judge(read_all(new), read_committed(kafka_servers, topics_of(new)))
        assert verdict.exactly_once, verdict

    status = relay_cli(new_url, kafka_context, kafka_servers, "status")
    assert status.returncode == 0, status.stderr
    assert "backlog 0 events" in status.stdout
