"""Transforms on a real Kafka broker: outputs, their headers, a projection of
them, dead letters, status, and the command."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable

import orjson
import pytest
from confluent_kafka import Producer

from eventsource import Event, stream
from eventsource.bus.config import KafkaConfig
from eventsource.bus.kafka import KafkaLogConsumer
from eventsource.errors import PoisonEvent
from eventsource.projections.worker import Worker
from eventsource.store.engine import create_engine
from eventsource.streams.kafka import TransformRunner
from eventsource.streams.status import kafka_status
from tests.bus.model import read_committed
from tests.conftest import ROOT, unique
from tests.streams.apps import (
    LARGE,
    StDeposited,
    Totals,
    expected_outputs,
    expected_totals,
    movements_of,
    record_movements,
    totals_table,
)
from tests.streams.conftest import Source, judge_outputs, read_outputs

pytestmark = pytest.mark.kafka


@pytest.fixture
def source(source_factory: Callable[..., Source], kafka_config: KafkaConfig) -> Source:
    made = source_factory(kafka_config)
    record_movements(made.store, accounts=20, events=600, seed=3)
    made.publish()
    return made


def test_a_transform_writes_each_output_once_in_per_key_order(source: Source) -> None:
    transform = movements_of(source.topic, source.output, unique("st.moves"))
    assert source.kafka is not None
    with TransformRunner(transform, source.kafka, batch_size=50) as runner:
        processed = runner.run(until_caught_up=True)
    records = source.records()
    assert processed == len(records)
    verdict = judge_outputs(records, read_outputs(source))
    assert verdict.exactly_once, str(verdict)
    assert runner.produced == verdict.delivered == len(expected_outputs(records))


def test_outputs_carry_their_causes_ids_and_time(source: Source) -> None:
    transform = movements_of(source.topic, source.output, unique("st.moves"))
    assert source.kafka is not None
    with TransformRunner(transform, source.kafka) as runner:
        runner.run(until_caught_up=True)
    inputs = {str(r.event_id): r for r in source.records()}
    delivered = read_outputs(source)
    assert delivered
    for d in delivered:
        cause = inputs[d.headers["es-causation-id"].decode()]
        correlation = orjson.loads(cause.metadata)["correlation_id"]
        assert d.headers["es-correlation-id"].decode() == correlation
        assert d.headers["es-occurred-at"].decode() == cause.occurred_at.isoformat(
            timespec="microseconds"
        )
        assert d.headers["es-position"] == b"0"
        assert "es-store" not in d.headers
        assert d.headers["es-aggregate-type"] == b"movement"
    # The same input and index always give the same id: a rerun writes the same records.
    assert len({d.headers["es-event-id"] for d in delivered}) == len(delivered)


def test_a_projection_folds_a_transforms_output(source: Source, database_url_factory) -> None:
    transform = movements_of(source.topic, source.output, unique("st.moves"))
    assert source.kafka is not None
    with TransformRunner(transform, source.kafka) as runner:
        runner.run(until_caught_up=True)
    views = create_engine(database_url_factory("sqlite"))

    class OutputTotals(Totals):
        name = unique("st.totals")
        topics = [source.output]

    log = KafkaLogConsumer(source.kafka, group_id=unique("st-totals"))
    worker = Worker(OutputTotals(), log, engine=views)
    try:
        worker.run(until_caught_up=True)
    finally:
        worker.close()
    with views.connect() as conn:
        rows = {
            r.account: {"movements": r.movements, "total": r.total, "large": r.large}
            for r in conn.execute(totals_table.select())
        }
    views.dispose()
    assert rows == expected_totals(expected_outputs(source.records()))


def test_a_record_that_fails_stops_the_transform_before_its_batch_is_written(
    source: Source,
) -> None:
    def fragile(event: StDeposited) -> StDeposited:
        if event.amount == LARGE:
            raise ValueError("too large")
        return event

    assert source.kafka is not None
    name = unique("st.fragile")
    output = f"{source.context}.fragile"
    transform = stream(source.topic, StDeposited).map(fragile).to(output, name=name)
    with (
        TransformRunner(transform, source.kafka, batch_size=50) as runner,
        pytest.raises(PoisonEvent) as raised,
    ):
        runner.run(until_caught_up=True)
    assert raised.value.kind == "transform"
    assert "too large" in str(raised.value)
    assert str(raised.value).startswith(f"transform {name!r} failed on st.deposited")
    # What was committed is exactly the outputs of the inputs below the
    # committed offsets, and the failing record is not among them.
    servers = source.kafka.bootstrap_servers
    inputs = read_committed(servers, [source.topic])
    committed = {
        p.partition: p.committed or 0 for p in kafka_status(transform, source.kafka).partitions
    }
    done = [d for d in inputs if d.offset < committed[d.partition]]
    assert raised.value.offset >= committed[raised.value.partition]
    deposits = {
        d.headers["es-event-id"].decode()
        for d in done
        if d.headers["es-event-type"] == b"st.deposited"
    }
    written = read_committed(servers, [output])
    assert sorted(w.headers["es-causation-id"].decode() for w in written) == sorted(deposits)


def test_parked_records_go_to_the_dead_letter_topic_and_the_rest_flows(
    source: Source,
) -> None:
    def fragile(event: StDeposited) -> StDeposited:
        if event.amount == LARGE:
            raise ValueError("too large")
        return event

    assert source.kafka is not None
    name = unique("st.fragile")
    output = f"{source.context}.fragile"
    dead = f"{source.context}.fragile-dead"
    transform = (
        stream(source.topic, StDeposited)
        .map(fragile)
        .to(output, name=name, on_failure="park", dead_letter_topic=dead)
    )
    with TransformRunner(transform, source.kafka) as runner:
        runner.run(until_caught_up=True)
    deposits = [r for r in source.records() if r.event_type == "st.deposited"]
    poison = [r for r in deposits if orjson.loads(r.payload)["amount"] == LARGE]
    written = read_committed(source.kafka.bootstrap_servers, [output])
    parked = read_committed(source.kafka.bootstrap_servers, [dead])
    assert len(written) == len(deposits) - len(poison)
    assert sorted(p.headers["es-event-id"].decode() for p in parked) == sorted(
        str(r.event_id) for r in poison
    )
    for p in parked:
        assert b"too large" in p.headers["es-dead-letter-error"]
        assert p.headers["es-dead-letter-topic"].decode() == source.topic
    assert runner.parked == len(poison)


def test_status_shows_committed_offsets_and_lag(source: Source) -> None:
    transform = movements_of(source.topic, source.output, unique("st.moves"))
    assert source.kafka is not None
    before = kafka_status(transform, source.kafka)
    assert all(p.committed is None for p in before.partitions)
    assert before.lag >= len(source.records())
    with TransformRunner(transform, source.kafka) as runner:
        runner.run(until_caught_up=True)
    after = kafka_status(transform, source.kafka)
    assert [p.partition for p in after.partitions] == [0, 1, 2]
    assert all(p.committed is not None for p in after.partitions)
    # At most the relay's last commit marker per partition is left.
    assert after.lag <= 3
    assert max(p.last_position for p in after.partitions) == source.store.head_position()


def test_the_command_runs_a_transform_and_reports_its_status(source: Source) -> None:
    name = unique("st.moves")
    env = source.env(name)
    command = [sys.executable, "-m", "eventsource"]
    path = "tests.streams.apps:movements"
    ran = subprocess.run(
        [*command, "transform", "run", path, "--until-caught-up"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    records = source.records()
    assert f"{len(records)} messages read" in ran.stdout
    verdict = judge_outputs(records, read_outputs(source))
    assert verdict.exactly_once, str(verdict)
    shown = subprocess.run(
        [*command, "transform", "status", path, "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    [status] = orjson.loads(shown.stdout)
    assert status["name"] == name
    assert status["output"] == source.output
    assert status["lag"] <= 3


def test_sigterm_finishes_the_batch_in_hand(source: Source) -> None:
    """A runner told to stop commits what it polled and stops; a second run
    goes on from there, and together they wrote each output once."""
    transform = movements_of(source.topic, source.output, unique("st.moves"))
    assert source.kafka is not None
    stop = threading.Event()
    with TransformRunner(transform, source.kafka, batch_size=20) as runner:
        runner.run(stop=stop, on_batch=lambda batch: stop.set())
        first = runner.processed
    assert 0 < first <= 20
    with TransformRunner(transform, source.kafka, batch_size=20) as runner:
        runner.run(until_caught_up=True)
    assert first + runner.processed == len(source.records())
    verdict = judge_outputs(source.records(), read_outputs(source))
    assert verdict.exactly_once, str(verdict)


class Unrelated(Event):
    event_type = "st.unrelated"

    text: str


def test_foreign_garbage_in_an_input_topic_is_a_poison_record(source: Source) -> None:
    assert source.kafka is not None
    producer = Producer({"bootstrap.servers": source.kafka.bootstrap_servers})
    producer.produce(source.topic, b"not an event", b"acc-1", partition=0)
    producer.flush(10)
    transform = movements_of(source.topic, source.output, unique("st.moves"))
    with (
        TransformRunner(transform, source.kafka, batch_size=10_000) as runner,
        pytest.raises(PoisonEvent) as raised,
    ):
        runner.run(until_caught_up=True)
    assert raised.value.event_type is None
    assert "not an eventsource event" in str(raised.value)


COMMAND = [sys.executable, "-m", "eventsource"]


def test_until_caught_up_ends_at_once_on_an_input_topic_that_does_not_exist(
    source: Source,
) -> None:
    # Nothing was ever written there (or the name is misspelled): there is
    # nothing to catch up with, and the process says which topic it missed.
    env = source.env(unique("st.missing"), STTEST_INPUT=f"{source.context}.nothing")
    ran = subprocess.run(
        [*COMMAND, "transform", "run", "tests.streams.apps:movements", "--until-caught-up"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert f"topic {source.context}.nothing does not exist" in ran.stderr
    assert "0 messages read, 0 records written" in ran.stdout
