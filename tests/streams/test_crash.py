"""Transform processes killed, paused and fenced while input arrives.

`eventsource transform run` processes are SIGKILLed at random moments
after they committed a batch, or paused (SIGSTOP) while another process
takes their place; a feeder thread records and relays more input the
whole time. At the end an independent `read_committed` reader must see
every input's outputs exactly once, each key's in its inputs' order.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from confluent_kafka import Consumer
from confluent_kafka import TopicPartition as KafkaTopicPartition

from eventsource.bus.config import KafkaConfig
from eventsource.streams.kafka import group_id
from tests.conftest import unique
from tests.projections.streams import WorkerProcess, wait_until
from tests.streams.apps import record_movements
from tests.streams.conftest import Source, judge_outputs, read_outputs

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

KILLS = 10
BATCH_SIZES = ["5", "30", "100"]


class Progress:
    """The sum of a transform group's committed offsets (what committed so far)."""

    def __init__(self, source: Source, name: str) -> None:
        assert source.kafka is not None
        # read_uncommitted: never wait for a killed process's open transaction.
        self.consumer = Consumer(
            {
                "bootstrap.servers": source.kafka.bootstrap_servers,
                "group.id": group_id(name),
                "enable.auto.commit": False,
                "isolation.level": "read_uncommitted",
            }
        )
        self.partitions = [
            KafkaTopicPartition(source.topic, p) for p in range(source.kafka.partitions)
        ]

    def __call__(self) -> int:
        found = self.consumer.committed(self.partitions, timeout=10)
        return sum(max(tp.offset, 0) for tp in found)

    def close(self) -> None:
        self.consumer.close()


@contextmanager
def feeding(source: Source, *, every: float = 0.3) -> Iterator[None]:
    """Record and relay 60 more events every `every` seconds while the block runs."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def feed() -> None:
        seed = 100
        try:
            while not stop.wait(every):
                seed += 1
                record_movements(source.store, accounts=40, events=60, seed=seed)
                source.publish()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=feed, name="feeder", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(60)
    assert not errors, errors


def process(source: Source, name: str, member: str, log_name: str, *extra: str) -> WorkerProcess:
    assert source.kafka is not None
    env = source.env(
        name,
        EVENTSOURCE_WORKER_NAME=member,
        EVENTSOURCE_KAFKA_CONFIG=json.dumps({"session.timeout.ms": "6000"}),
    )
    return WorkerProcess(
        ["transform", "run", "tests.streams.apps:movements", *extra],
        env,
        source.directory / log_name,
    )


def finish(source: Source, name: str, *members: str) -> None:
    """Run the transform to the end of its input; every output must then be there once.

    Each of `members` runs once more, as restarted processes do: a restart
    under a name aborts the transaction its killed predecessor left open, at
    once (under another name, that transaction would hold `read_committed`
    readers back until it timed out); and as each name is a static member of
    the group, it takes back its own partitions, so together the runs read
    every partition to its end."""
    for member in members:
        last = process(source, name, member, f"final-{member}.log", "--until-caught-up")
        assert last.wait(180) == 0, last.output()
    verdict = judge_outputs(source.records(), read_outputs(source))
    assert verdict.exactly_once, str(verdict)
    print(f"{verdict.delivered} outputs of {len(source.records())} inputs, each once")


@pytest.fixture
def source(source_factory: Callable[..., Source], kafka_config: KafkaConfig) -> Source:
    made = source_factory(kafka_config)
    record_movements(made.store, accounts=40, events=1500, seed=1)
    made.publish()
    return made


def test_a_transform_killed_10_times_writes_every_output_exactly_once(source: Source) -> None:
    name = unique("st.crash")
    progress = Progress(source, name)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    try:
        with feeding(source):
            for i in range(KILLS):
                before = progress()
                worker = process(
                    source, name, "crashy", f"run-{i}.log", "--batch-size", rng.choice(BATCH_SIZES)
                )
                try:
                    wait_until(
                        lambda: progress() > before or not worker.alive(),  # noqa: B023
                        90,
                        f"transform run {i} to commit a batch",
                        interval=0.05,
                    )
                    time.sleep(rng.uniform(0, 0.3))
                    assert worker.alive(), f"run {i} ended before it was killed:\n{worker.output()}"
                finally:
                    worker.kill()
        print(f"seed {seed}: {progress()} input messages committed before the last run")
    finally:
        progress.close()
    finish(source, name, "crashy")


def test_a_paused_process_whose_place_was_taken_is_fenced(source: Source) -> None:
    """Same member name: the newer process fences the older one's producer
    (aborting its open transaction) and its group membership; the older
    one, resumed, stops with an error and writes nothing more."""
    name = unique("st.zombie")
    progress = Progress(source, name)
    try:
        with feeding(source, every=0.2):
            zombie = process(source, name, "twin", "zombie.log", "--batch-size", "5")
            wait_until(lambda: progress() > 0, 90, "the first process to commit", interval=0.05)
            time.sleep(0.5)
            zombie.process.send_signal(signal.SIGSTOP)
            paused_at = progress()
            successor = process(source, name, "twin", "successor.log", "--batch-size", "50")
            wait_until(lambda: progress() > paused_at, 90, "the successor to commit")
            zombie.process.send_signal(signal.SIGCONT)
            code = zombie.wait(60)
            assert code == 1, zombie.output()
            assert "fenced" in zombie.output() or "took this one's place" in zombie.output()
            assert successor.alive(), successor.output()
            successor.terminate()
            assert successor.wait(60) == 0, successor.output()
    finally:
        progress.close()
    finish(source, name, "twin")


def test_a_process_that_missed_a_rebalance_cannot_commit_over_its_successor(
    source: Source,
) -> None:
    """Two members; one is paused past its session, the other takes all the
    partitions (a newer generation of the group). Resumed, the first one's
    transaction is refused or committed before the other reads its offsets
    (KIP-447): either way each output is written once."""
    name = unique("st.rebalance")
    progress = Progress(source, name)
    try:
        with feeding(source, every=0.2):
            first = process(source, name, "first", "first.log", "--batch-size", "5")
            second = process(source, name, "second", "second.log", "--batch-size", "5")
            wait_until(lambda: progress() > 0, 90, "a process to commit", interval=0.05)
            time.sleep(1.0)
            first.process.send_signal(signal.SIGSTOP)
            time.sleep(8.0)  # past the 6 s session: the second takes every partition
            first.process.send_signal(signal.SIGCONT)
            time.sleep(3.0)
            for worker in (first, second):
                assert worker.alive(), worker.output()
                worker.terminate()
            for worker in (first, second):
                assert worker.wait(60) == 0, worker.output()
    finally:
        progress.close()
    finish(source, name, "first", "second")
