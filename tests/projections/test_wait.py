"""Read-your-writes: `Repository.save` returns a position, `wait_for` waits for it.

On the embedded log, and on Kafka with 6 partitions and a relay running:
once `wait_for` returns, the view shows the write; with no worker running it
raises `WaitTimeout` after the timeout. `wait_for` finds an aggregate's
partition with Kafka's murmur2 partitioner: checked against the partitions
the relay's producer actually chose, and against the Java client's values.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Consumer, KafkaError
from confluent_kafka import TopicPartition as KafkaTopicPartition

from eventsource import Repository, Worker
from eventsource.bus.partitioner import murmur2, partition_for
from eventsource.projections.wait import WaitTimeout, wait_for
from tests.conftest import unique
from tests.projections.apps_rebuild import RbWallet, wallet_totals
from tests.projections.rig import PARTITIONS, RIGS, Background, Rig, open_rig

APP = "tests.projections.apps_rebuild:EnvWalletTotals"


@pytest.fixture(params=RIGS)
def rig(request: pytest.FixtureRequest, database_url_factory: Callable[..., str]) -> Iterator[Rig]:
    with open_rig(request.param, database_url_factory) as opened:
        yield opened


def test_wait_for_returns_once_the_view_shows_the_write(rig: Rig) -> None:
    Totals = wallet_totals(rig.context, unique("rb_wait"))
    repository = Repository(rig.store, RbWallet)
    wallets = [RbWallet.open(f"wallet-{i}", f"owner-{i % 3}") for i in range(24)]
    repository.save(*wallets)
    rig.start_relay()
    stop = threading.Event()
    worker = Worker(Totals(), rig.log(), engine=rig.views, batch_size=20, poll_timeout=0.02)
    running = Background(lambda: worker.run(stop=stop), "worker")
    chooser = random.Random(7)
    try:
        for round_ in range(25):
            wallet = chooser.choice(wallets)
            wallet.deposit(round_ + 1)
            position = repository.save(wallet)
            assert position > 0
            wait_for(
                Totals,
                position,
                store=rig.store,
                views=rig.views,
                partitions=rig.partitions,
                timeout=30,
            )
            row = rig.rows("rb_wallets", "wallet")[wallet.id]
            assert (row["last_version"], row["total"]) == (wallet.version, wallet.total)
    finally:
        stop.set()
        running.join()


def test_wait_for_times_out_when_no_worker_applies_the_write(rig: Rig) -> None:
    name = unique("rb_nowait")
    Totals = wallet_totals(rig.context, name)
    repository = Repository(rig.store, RbWallet)
    position = repository.save(RbWallet.open("lonely", "owner-0"))
    rig.publish()

    started = time.monotonic()
    with pytest.raises(WaitTimeout) as timed_out:
        wait_for(
            Totals,
            position,
            store=rig.store,
            views=rig.views,
            partitions=rig.partitions,
            timeout=0.5,
        )
    waited = time.monotonic() - started
    assert 0.5 <= waited < 3.0
    assert isinstance(timed_out.value, TimeoutError)
    assert (timed_out.value.projection, timed_out.value.position) == (name, position)

    # The command line form: it fails the same way, and succeeds once applied.
    env = rig.env(RBTEST_NAME=name)
    args = ["projection", "wait", APP, "--position", str(position), "--store-context", rig.context]
    refused = rig.cli(*args, "--timeout", "0.5", env=env)
    assert refused.returncode == 1
    assert f"had not applied global position {position}" in refused.stderr
    Worker(Totals(), rig.log(), engine=rig.views).run(until_caught_up=True)
    done = rig.cli(*args, env=env)
    assert done.returncode == 0, done.stderr
    assert f"has applied position {position}" in done.stdout


def test_murmur2_matches_the_java_client() -> None:
    # Kafka's own test vectors for `Utils.murmur2` (as signed 32-bit ints).
    cases = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for data, expected in cases.items():
        value = murmur2(data)
        assert (value - (1 << 32) if value >= 1 << 31 else value) == expected, data


@pytest.mark.kafka
@pytest.mark.postgres
def test_partitioner_agrees_with_the_partitions_the_relay_chose(
    database_url_factory: Callable[..., str],
) -> None:
    with open_rig("kafka-postgres", database_url_factory) as rig:
        ids = [f"w{i}" for i in range(150)] + ["a", "ab", "abc", "abcd", "ünïcødé-ключ", "x" * 200]
        repository = Repository(rig.store, RbWallet)
        repository.save(*[RbWallet.open(wallet_id, "owner") for wallet_id in ids])
        rig.publish()
        assert rig.kafka is not None
        consumer = Consumer(rig.kafka.consumer(unique("rbcheck"), **{"enable.partition.eof": True}))
        topic = f"{rig.context}.wallet"
        consumer.assign([KafkaTopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        seen: dict[str, int] = {}
        deadline = time.monotonic() + 60
        try:
            # Until every message is in: right after a commit, read_committed
            # may report the end of a partition before its messages are readable.
            while len(seen) < len(ids) and time.monotonic() < deadline:
                message = consumer.poll(0.2)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, error
                    continue
                key = message.key()
                assert key is not None
                partition = message.partition()
                assert partition is not None
                seen[key.decode()] = partition
        finally:
            consumer.close()
        assert set(seen) == set(ids)
        wrong = {k: (p, partition_for(k, PARTITIONS)) for k, p in seen.items()}
        wrong = {k: v for k, v in wrong.items() if v[0] != v[1]}
        assert wrong == {}
        assert len(Counter(seen.values())) == PARTITIONS  # the keys are spread over all


@pytest.mark.kafka
@pytest.mark.postgres
def test_wait_for_asks_the_broker_for_the_partition_count(
    database_url_factory: Callable[..., str],
) -> None:
    with open_rig("kafka-postgres", database_url_factory) as rig:
        assert rig.kafka is not None
        assert rig.partitions == 6
        name = unique("rb_count")
        Totals = wallet_totals(rig.context, name)
        repository = Repository(rig.store, RbWallet)
        position = repository.save(*[RbWallet.open(f"c{i}", "owner") for i in range(30)])
        rig.publish()
        # Nothing applied yet: the timeout says which partition it waits for.
        with pytest.raises(WaitTimeout) as timed_out:
            wait_for(
                Totals, position, store=rig.store, views=rig.views, kafka=rig.kafka, timeout=0.3
            )
        assert f"{rig.context}.wallet[" in str(timed_out.value)
        assert "the projection has applied nothing there" in str(timed_out.value)

        Worker(Totals(), rig.log(), engine=rig.views).run(until_caught_up=True)
        started = time.monotonic()
        wait_for(Totals, position, store=rig.store, views=rig.views, kafka=rig.kafka, timeout=30)
        assert time.monotonic() - started < 5  # not the timeout: it returned once applied
