"""Transforms on the embedded log: the output goes to the context's store,
exactly once, and projections read it like any other topic."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from eventsource import ConfigurationError, EventStore, ForeignTopic, stream
from eventsource.bus.sqllog import SqlLogConsumer
from eventsource.projections.worker import Worker
from eventsource.streams.embedded import reactor_for
from tests.bus.model import read_all
from tests.conftest import ROOT, unique
from tests.projections.streams import clean_env
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
from tests.streams.conftest import Source


def own_store(tmp_path: Path) -> EventStore:
    context = unique("stown")
    store = EventStore(f"sqlite:///{tmp_path / context}.db", context=context)
    store.create_schema()
    return store


def run_transform(transform, source: Source, own: EventStore) -> int:
    log = SqlLogConsumer({source.context: source.store, own.context: own}, poll_interval=0.01)
    worker = Worker(reactor_for(transform, own.context)(), log, store=own)
    try:
        return worker.run(until_caught_up=True)
    finally:
        worker.close()


def outputs(own: EventStore) -> dict[tuple[str, str], dict[str, object]]:
    found: dict[tuple[str, str], dict[str, object]] = {}
    for r in read_all(own):
        assert (r.event_type, r.aggregate_type) in {
            ("st.movement", "movement"),
            ("st.large_movement", "movement"),
        }
        cause = orjson.loads(r.metadata)["causation_id"]
        assert (cause, r.event_type) not in found, "an output written twice"
        value = orjson.loads(r.payload)
        found[cause, r.event_type] = {"key": r.aggregate_id, **value}
    return found


def test_outputs_are_appended_to_the_store_exactly_once(
    source_factory: Callable[..., Source], tmp_path: Path
) -> None:
    source = source_factory()
    own = own_store(tmp_path)
    transform = movements_of(source.topic, f"{own.context}.movement", unique("st.moves"))
    record_movements(source.store, accounts=15, events=400, seed=5)
    assert run_transform(transform, source, own) == len(source.records())
    record_movements(source.store, accounts=15, events=300, seed=6)
    run_transform(transform, source, own)
    assert outputs(own) == expected_outputs(source.records())
    # Each key's outputs are a stream of the store, numbered in order.
    versions: dict[str, list[int]] = {}
    for r in read_all(own):
        versions.setdefault(r.aggregate_id, []).append(r.version)
    assert all(v == list(range(1, len(v) + 1)) for v in versions.values())
    own.close()


def test_a_projection_reads_the_output_topic(
    source_factory: Callable[..., Source], tmp_path: Path
) -> None:
    source = source_factory()
    own = own_store(tmp_path)
    output = f"{own.context}.movement"
    transform = movements_of(source.topic, output, unique("st.moves"))
    record_movements(source.store, accounts=10, events=300, seed=7)
    run_transform(transform, source, own)

    class OutputTotals(Totals):
        name = unique("st.totals")
        topics = [output]

    worker = Worker(OutputTotals(), SqlLogConsumer({own.context: own}), engine=own.engine)
    worker.run(until_caught_up=True)
    with own.engine.connect() as conn:
        rows = {
            r.account: {"movements": r.movements, "total": r.total, "large": r.large}
            for r in conn.execute(totals_table.select())
        }
    assert rows == expected_totals(expected_outputs(source.records()))
    own.close()


def test_the_output_must_be_a_topic_of_the_transforms_own_context() -> None:
    transform = stream("bank.account", StDeposited).to("shop.copy")
    with pytest.raises(ConfigurationError, match="run it in context 'shop'"):
        reactor_for(transform, "bank")
    foreign = stream(ForeignTopic("crm.contacts", StDeposited)).to("bank.copy")
    with pytest.raises(ConfigurationError, match="only Kafka carries"):
        reactor_for(foreign, "bank")


def test_the_command_runs_a_transform_on_the_embedded_log(
    source_factory: Callable[..., Source],
) -> None:
    source = source_factory()
    record_movements(source.store, accounts=10, events=200, seed=8)
    name = unique("st.moves")
    env = clean_env(
        STTEST_INPUT=source.topic,
        STTEST_OUTPUT=source.output,
        STTEST_NAME=name,
        EVENTSOURCE_DATABASE_URL=source.url,
        EVENTSOURCE_CONTEXT=source.context,
    )
    command = [sys.executable, "-m", "eventsource", "transform"]
    path = "tests.streams.apps:movements"
    ran = subprocess.run(
        [*command, "run", path, "--until-caught-up"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    inputs = [r for r in source.records() if r.aggregate_type == "account"]
    assert f"{len(inputs)} events read" in ran.stdout
    movements = [r for r in source.records() if r.aggregate_type == "movement"]
    assert len(movements) == len(expected_outputs(inputs))
    shown = subprocess.run(
        [*command, "status", path, "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    [status] = json.loads(shown.stdout)
    assert status["name"] == name
    assert status["status"] == "stopped"
    assert status["lag_events"] == 0


def test_an_embedded_transforms_parked_records_are_listed_skipped_and_replayed(
    source_factory: Callable[..., Source],
) -> None:
    source = source_factory()
    record_movements(source.store, accounts=10, events=200, seed=9)
    refused = [
        r
        for r in source.records()
        if r.event_type == "st.deposited" and orjson.loads(r.payload)["amount"] >= LARGE
    ]
    assert refused
    env = clean_env(
        STTEST_INPUT=source.topic,
        STTEST_OUTPUT=source.output,
        STTEST_NAME=unique("st.parking"),
        EVENTSOURCE_DATABASE_URL=source.url,
        EVENTSOURCE_CONTEXT=source.context,
    )
    path = "tests.streams.apps:parking"

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "eventsource", *args],
            env={**env, **extra},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    ran = cli("transform", "run", path, "--until-caught-up")
    assert ran.returncode == 0, ran.stderr

    def parked() -> dict[int, dict[str, object]]:
        listed = cli("projection", "deadletters", path, "--json", "--limit", "1000")
        assert listed.returncode == 0, listed.stderr
        return {
            d["position"]: d
            for d in json.loads(listed.stdout)
            if d["status"] in ("parked", "blocked")
        }

    # Each refused deposit waits, and so does what came after it in its
    # stream (a stream's events are applied in order): the first parked,
    # the rest blocked behind it.
    letters = parked()
    refused_streams = {r.stream_id for r in refused}
    assert {r.position for r in refused} <= set(letters)
    assert {d["stream_id"] for d in letters.values()} == refused_streams
    heads = {d["stream_id"] for d in letters.values() if d["status"] == "parked"}
    assert heads == refused_streams

    first = refused[0]
    letter_id = str(letters[first.position]["id"])
    skipped = cli("projection", "skip", path, "--id", letter_id, "--reason", "test")
    assert skipped.returncode == 0, skipped.stderr
    # The handler still refuses the others: replay leaves them parked, and says so.
    replayed = cli("projection", "replay", path)
    assert replayed.returncode == 1
    assert "still parked" in replayed.stdout
    after = parked()
    assert first.position not in after
    assert {r.position for r in refused[1:]} <= set(after)

    wrong = cli("projection", "run", path)
    assert wrong.returncode == 1
    assert "is a transform: run it with `eventsource transform run`" in wrong.stderr
    on_kafka = cli("projection", "deadletters", path, EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS="x:1")
    assert on_kafka.returncode == 1
    assert "parks records on topic" in on_kafka.stderr
    assert "Traceback" not in wrong.stderr + on_kafka.stderr
