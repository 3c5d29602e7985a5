"""The projection worker: exactly once, resumable, and loud about what it cannot apply."""

from __future__ import annotations

import gc
import json
import logging
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from confluent_kafka import Producer
from sqlalchemy import select, text

from eventsource import (
    ConfigurationError,
    Event,
    Projection,
    Repository,
    StoredEvent,
    View,
    Worker,
    handles,
)
from eventsource.errors import PoisonEvent, ProjectionVersionMismatch
from eventsource.projections.batch import BatchStats
from eventsource.projections.tables import positions
from eventsource.store.engine import create_engine
from tests.conftest import ROOT, unique
from tests.projections.apps import BalancesBase, PjAccount, PjDeposited, audits, balances
from tests.projections.conftest import EMBEDDED, KAFKA, MODES, Harness
from tests.projections.streams import (
    WorkerProcess,
    assert_view_is_fold,
    consumer_state,
    fold,
    populate,
    read_all,
    stored_positions,
    view_state,
    wait_until,
    worker_counts,
)


def run_to_end(harness: Harness, projection: Projection, **options: object) -> int:
    worker = Worker(projection, harness.log(), engine=harness.views, **options)  # type: ignore[arg-type]
    try:
        return worker.run(until_caught_up=True)
    finally:
        worker.close()


def assert_positions_at_end(harness: Harness, name: str) -> None:
    """Every partition's stored position is past the last event of the source."""
    stored = stored_positions(harness.views, name)
    head = harness.source.head_position()
    assert max(last for _, last, _ in stored.values()) == head
    if not harness.kafka_mode:
        assert stored == {(harness.topic, 0): (head + 1, head, stored[(harness.topic, 0)][2])}


@pytest.mark.parametrize("harness", [EMBEDDED], indirect=True)
def test_batches_start_small_and_grow_to_the_cap_a_reactors_cap_is_1000(
    harness: Harness,
) -> None:
    count = populate(harness.source, events=6000, accounts=40)
    sizes: dict[str, list[int]] = {"projection": [], "capped": [], "reactor": []}
    views, store = {"engine": harness.views}, {"store": harness.own_store()}
    for kind, consumer, target, cap in (
        ("projection", balances(harness.context, unique("pj_big"))(), views, None),
        ("capped", balances(harness.context, unique("pj_cap"))(), views, 700),
        ("reactor", audits(harness.context, unique("pj_small"))(), store, None),
    ):
        worker = Worker(consumer, harness.log(), batch_size=cap, **target)  # type: ignore[arg-type]
        assert worker.batch_size == (cap or (1000 if kind == "reactor" else 20_000))
        try:
            worker.run(
                until_caught_up=True, on_batch=lambda _w, s, k=kind: sizes[k].append(s.messages)
            )
        finally:
            worker.close()
    for batches in sizes.values():
        assert sum(batches) == count
        assert batches[0] == 100  # before anything was measured
    # A fast fold asks for more once it has seen how fast it is.
    assert max(sizes["projection"]) > 1000
    assert max(sizes["capped"]) == 700
    assert max(sizes["reactor"]) <= 1000


@pytest.mark.parametrize("harness", [EMBEDDED], indirect=True)
def test_a_slow_handler_gets_small_batches_so_the_worker_beats_between_them(
    harness: Harness,
) -> None:
    count = populate(harness.source, events=400, accounts=10)

    def slowly(self: BalancesBase, event: Event, view: View) -> None:
        time.sleep(0.01)  # a handler that waits on something: 10 ms an event

    cls = balances(harness.context, unique("pj_slow"), touch=slowly)
    sizes: list[int] = []
    seconds: list[float] = []
    last = time.monotonic()

    def noted(_w: Worker, stats: BatchStats) -> None:
        nonlocal last
        now = time.monotonic()
        if stats.messages:
            sizes.append(stats.messages)
            seconds.append(now - last)
        last = now

    worker = Worker(cls(), harness.log(), engine=harness.views)
    try:
        worker.run(until_caught_up=True, on_batch=noted)
    finally:
        worker.close()
    assert sum(sizes) == count
    assert sizes[0] == 100
    # About a quarter of a second of work each after the first (which is
    # all the worker knows before it has measured), not 20,000 events.
    assert max(sizes[1:]) <= 50
    assert max(seconds[1:]) < 1.0


def test_folds_a_stream_exactly_once(harness: Harness) -> None:
    count = populate(harness.source, events=3000, accounts=80)
    harness.publish()
    cls = balances(harness.context, unique("pj_fold"))

    applied = run_to_end(harness, cls(), batch_size=200)

    assert applied == count
    records = read_all(harness.source)
    assert_view_is_fold(harness.views, records)
    assert fold(records).handled < count  # notes were read and skipped
    assert_positions_at_end(harness, cls.name)
    state = consumer_state(harness.views, cls.name)
    assert state is not None
    assert (state["kind"], state["status"], state["version"]) == ("projection", "stopped", 1)


@pytest.mark.parametrize("harness", MODES, indirect=True)
def test_a_worker_leaves_the_interpreter_settings_of_its_host_alone(harness: Harness) -> None:
    # An application that runs a Worker in its own process keeps its garbage
    # collector, its thresholds and its GIL switch interval, on every thread.
    populate(harness.source, events=600, accounts=30)
    harness.publish()
    seen: list[tuple[bool, tuple[int, ...], float]] = []

    def touch(self: BalancesBase, event: Event, view: View) -> None:
        seen.append((gc.isenabled(), gc.get_threshold(), sys.getswitchinterval()))

    before = (gc.isenabled(), gc.get_threshold(), sys.getswitchinterval())
    cls = balances(harness.context, unique("pj_host"), touch=touch)
    worker = Worker(cls(), harness.log(), engine=harness.views, batch_size=50)
    try:
        worker.run(until_caught_up=True)
    finally:
        worker.close()

    assert len(seen) > 300  # every handled event (notes are not handled)
    assert set(seen) == {before}
    assert (gc.isenabled(), gc.get_threshold(), sys.getswitchinterval()) == before


def test_resumes_from_stored_positions_after_a_restart(harness: Harness) -> None:
    first = populate(harness.source, events=1200, accounts=40, prefix="x")
    harness.publish()
    cls = balances(harness.context, unique("pj_resume"))
    assert run_to_end(harness, cls(), batch_size=100) == first
    before = stored_positions(harness.views, cls.name)

    second = populate(harness.source, events=800, accounts=30, prefix="y", seed=2)
    harness.publish()
    # A new worker (and on Kafka a new consumer group with no committed offsets)
    # starts where the database says, not from offset zero.
    assert run_to_end(harness, cls(), batch_size=100) == second

    after = stored_positions(harness.views, cls.name)
    assert all(after[tp][0] >= before[tp][0] for tp in before)
    assert_view_is_fold(harness.views, read_all(harness.source))
    assert_positions_at_end(harness, cls.name)


def test_unhandled_and_unknown_event_types_advance_positions(harness: Harness) -> None:
    account = PjAccount.open("solo", "owner-0")
    for i in range(5):
        account.note(f"note {i}")
    Repository(harness.source, PjAccount).save(account)
    # A type this process has no class for (a newer producer added it): a
    # projection that cannot handle it must not stop on it.
    harness.source.append_records(
        [
            StoredEvent(
                position=0,
                stream_id="account:newer",
                aggregate_id="newer",
                aggregate_type="account",
                version=1,
                event_type="pj.added_in_a_later_release",
                schema_version=1,
                event_id=uuid4(),
                occurred_at=datetime.now(UTC),
                payload='{"anything": 1}',
                metadata="{}",
            )
        ]
    )
    account.deposit(10)
    Repository(harness.source, PjAccount).save(account)
    harness.publish()
    cls = balances(harness.context, unique("pj_skip"))

    assert run_to_end(harness, cls(), batch_size=3) == 8

    assert view_state(harness.views).balances == {
        "solo": {"owner": "owner-0", "events": 2, "total": 10, "last_version": 7}
    }
    assert_positions_at_end(harness, cls.name)


def test_an_old_consumer_applies_events_with_fields_it_does_not_know(harness: Harness) -> None:
    # A newer producer added `lot: str = "unknown"` to deposits and was deployed
    # first: this consumer's class has no such field, applies them and goes on.
    account = PjAccount.open("older", "owner-1")
    account.deposit(5)
    Repository(harness.source, PjAccount).save(account)
    newer = [
        StoredEvent(
            position=0,
            stream_id="account:older",
            aggregate_id="older",
            aggregate_type="account",
            version=3 + i,
            event_type=PjDeposited.event_type,
            schema_version=PjDeposited.schema_version,
            event_id=uuid4(),
            occurred_at=datetime.now(UTC),
            payload=f'{{"amount": {10 * (i + 1)}, "lot": "L-{i}"}}',
            metadata="{}",
        )
        for i in range(3)
    ]
    harness.source.append_records(newer)
    harness.publish()
    cls = balances(harness.context, unique("pj_forward"))

    assert run_to_end(harness, cls(), batch_size=2) == 5

    assert view_state(harness.views).balances == {
        "older": {"owner": "owner-1", "events": 5, "total": 65, "last_version": 5}
    }
    state = consumer_state(harness.views, cls.name)
    assert state is not None
    assert (state["status"], state["last_error"]) == ("stopped", None)


class NoHandlers(Projection):
    name = "pj_no_handlers"
    topics = ["pjnowhere.account"]


class NoTopics(Projection):
    name = "pj_no_topics"

    @handles(PjDeposited)
    def _deposited(self, event: PjDeposited, view: View) -> None:
        pass


@pytest.mark.parametrize(
    ("cls", "message"),
    [(NoHandlers, "handles no event types"), (NoTopics, "names no topics")],
)
def test_a_consumer_that_cannot_run_is_an_error_at_start(
    harness: Harness, cls: type[Projection], message: str
) -> None:
    worker = Worker(cls(), harness.log(), engine=harness.views)
    with pytest.raises(ConfigurationError, match=message):
        worker.run(until_caught_up=True)
    assert consumer_state(harness.views, cls.name) is None


def test_a_changed_version_refuses_to_run_until_rebuilt(harness: Harness) -> None:
    populate(harness.source, events=200, accounts=10)
    harness.publish()
    name = unique("pj_versioned")
    run_to_end(harness, balances(harness.context, name)())
    newer = balances(harness.context, name, version=2)

    with pytest.raises(ProjectionVersionMismatch) as raised:
        run_to_end(harness, newer())

    assert (raised.value.projection, raised.value.stored, raised.value.declared) == (name, 1, 2)
    assert consumer_state(harness.views, name)["version"] == 1  # type: ignore[index]


def test_a_handler_that_keeps_failing_stops_the_worker_at_its_event(harness: Harness) -> None:
    populate(harness.source, events=600, accounts=20)
    harness.publish()
    records = read_all(harness.source)
    deposits = [r for r in records if r.event_type == "pj.deposited"]
    target = deposits[len(deposits) // 2]
    calls: Counter[str] = Counter()

    def touch(self: BalancesBase, event: Event, view: View) -> None:
        calls[str(event.event_id)] += 1
        if event.event_id == target.event_id:
            raise RuntimeError("the handler cannot cope with this one")

    cls = balances(harness.context, unique("pj_poison"), max_retries=2, touch=touch)

    with pytest.raises(PoisonEvent) as raised:
        run_to_end(harness, cls(), batch_size=50, retry_backoff=0.01)

    poison = raised.value
    assert (poison.projection, poison.topic) == (cls.name, harness.topic)
    assert poison.event_id == target.event_id
    assert poison.event_type == "pj.deposited"
    assert isinstance(poison.error, RuntimeError)
    assert calls[str(target.event_id)] == 1 + cls.max_retries
    assert gc.isenabled()
    if not harness.kafka_mode:
        assert (poison.partition, poison.offset) == (0, target.position)
    # Not one step past it: its partition's next offset is the poison event.
    stored = stored_positions(harness.views, cls.name)
    assert stored[(poison.topic, poison.partition)][0] == poison.offset
    state = consumer_state(harness.views, cls.name)
    assert state is not None
    assert state["status"] == "failed"
    assert "the handler cannot cope with this one" in state["last_error"]
    assert f"{poison.topic}" in state["last_error"]
    assert str(poison.offset) in state["last_error"]
    # Everything before it in its partition (its own account's history included) is applied.
    account_before = [r for r in records if r.aggregate_id == target.aggregate_id]
    account_before = [r for r in account_before if r.version < target.version]
    expected = fold(account_before).balances[target.aggregate_id]
    assert view_state(harness.views).balances[target.aggregate_id] == expected
    if not harness.kafka_mode:
        assert_view_is_fold(harness.views, [r for r in records if r.position < target.position])


@pytest.mark.parametrize("harness", [KAFKA], indirect=True)
def test_a_garbage_message_on_kafka_is_poison_without_retries(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    assert harness.kafka is not None
    populate(harness.source, events=60, accounts=6)
    harness.publish()
    delivered: list[tuple[int, int]] = []
    producer = Producer({"bootstrap.servers": harness.kafka.bootstrap_servers})
    producer.produce(
        harness.topic,
        b"\xff not json",
        b"account-x",
        partition=2,
        on_delivery=lambda err, msg: delivered.append((msg.partition(), msg.offset())),
    )
    assert producer.flush(30) == 0
    [(partition, offset)] = delivered
    cls = balances(harness.context, unique("pj_garbage"), max_retries=5)

    with caplog.at_level(logging.WARNING), pytest.raises(PoisonEvent) as raised:
        run_to_end(harness, cls(), batch_size=20, retry_backoff=5.0)

    poison = raised.value
    assert (poison.topic, poison.partition, poison.offset) == (harness.topic, partition, offset)
    assert poison.event_id is None
    assert "not an eventsource event" in str(poison.error)
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]
    # Not past it: at most the relay's commit marker lies between the last event and it.
    stored = stored_positions(harness.views, cls.name)[(harness.topic, partition)][0]
    assert offset - 1 <= stored <= offset
    assert consumer_state(harness.views, cls.name)["status"] == "failed"  # type: ignore[index]


def test_sigterm_finishes_the_batch_in_hand_and_exits_cleanly(harness: Harness) -> None:
    populate(harness.source, events=2000, accounts=50)
    harness.publish()
    records = read_all(harness.source)
    name = unique("pj_sigterm")
    flags = harness.tmp_path / "flags"
    flags.mkdir()
    env = harness.env(PJTEST_NAME=name, PJTEST_PAUSE_AT="60", PJTEST_FLAGS=str(flags))
    process = WorkerProcess(
        ["projection", "run", "tests.projections.apps:EnvBalances", "--batch-size", "50"],
        env,
        harness.tmp_path / "worker.log",
    )
    try:
        wait_until(lambda: (flags / "reached").exists() or not process.alive(), 60, "the pause")
        assert process.alive(), process.output()
        process.terminate()  # mid-batch: the handler of its 60th event is waiting
        (flags / "go").touch()
        assert process.wait(30) == 0, process.output()
    finally:
        process.kill()
    assert "finishing the current batch" in process.output()

    applied = worker_counts(harness.views)["main"]
    handled = fold(records).handled
    assert 60 <= applied < handled  # the paused batch committed, and nothing after it ran
    assert consumer_state(harness.views, name)["status"] == "stopped"  # type: ignore[index]
    if not harness.kafka_mode:
        # Embedded batches are exact: two batches of 50 messages.
        [(offset, last, _)] = stored_positions(harness.views, name).values()
        assert last == records[99].position
        assert offset == last + 1
        assert_view_is_fold(harness.views, records[:100])


def test_status_and_reset_from_the_command_line(harness: Harness) -> None:
    count = populate(harness.source, events=500, accounts=20)
    harness.publish()
    name = unique("pj_cli")
    env = harness.env(PJTEST_NAME=name)
    path = "tests.projections.apps:EnvBalances"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "eventsource", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    # A read-only command neither creates nor migrates the database it is pointed at.
    unmigrated = cli("projection", "status", path, "--json")
    assert unmigrated.returncode == 1
    said = "holds no eventsource projections table" if harness.kafka_mode else "no database at"
    assert said in unmigrated.stderr
    assert cli("db", "upgrade").returncode == 0
    before = cli("projection", "status", path, "--json")
    assert before.returncode == 0, before.stderr
    [report] = json.loads(before.stdout)
    assert (report["name"], report["status"]) == (name, "never run")
    if harness.kafka_mode:
        # Kafka's ends also count the relay's transaction markers (one per partition here).
        assert count <= report["lag"] <= count + len(report["partitions"])
    else:
        assert report["lag"] == count

    run = cli("projection", "run", path, "--until-caught-up", "--batch-size", "100")
    assert run.returncode == 0, run.stderr
    assert_view_is_fold(harness.views, read_all(harness.source))

    after = cli("projection", "status", path, "--json")
    [report] = json.loads(after.stdout)
    assert (report["status"], report["kind"], report["version"]) == ("stopped", "projection", 1)
    stored = stored_positions(harness.views, name)
    reported = {(p["topic"], p["partition"]): p for p in report["partitions"]}
    assert {tp: p["offset"] for tp, p in reported.items()} == {
        tp: offset for tp, (offset, _, _) in stored.items()
    }
    if harness.kafka_mode:
        assert all(p["lag"] <= 1 for p in reported.values())
    else:
        assert report["lag"] == 0

    reset = cli("projection", "reset", path, "--yes")
    assert reset.returncode == 0, reset.stderr
    assert view_state(harness.views).balances == {}
    assert stored_positions(harness.views, name) == {}
    with harness.views.connect() as conn:
        assert conn.execute(select(positions).where(positions.c.projection == name)).all() == []
    again = cli("projection", "run", path, "--until-caught-up")
    assert again.returncode == 0, again.stderr
    assert_view_is_fold(harness.views, read_all(harness.source))


@pytest.mark.parametrize("harness", [KAFKA], indirect=True)
def test_a_lost_database_connection_in_a_handler_is_retried_not_poison(harness: Harness) -> None:
    populate(harness.source, events=300, accounts=10)
    harness.publish()
    killer = create_engine(harness.views_url)
    cuts: list[int] = []

    def touch(self: BalancesBase, event: Event, view: View) -> None:
        if len(cuts) < 3 and event.event_type == "pj.deposited":
            # The server drops this worker's connection in the middle of the batch.
            pid = view.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with killer.connect() as conn:
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            cuts.append(pid)

    cls = balances(harness.context, unique("pj_cut"), max_retries=1, touch=touch)
    try:
        run_to_end(harness, cls(), batch_size=50, retry_backoff=0.01)
    finally:
        killer.dispose()

    assert len(cuts) == 3
    assert_view_is_fold(harness.views, read_all(harness.source))
    assert consumer_state(harness.views, cls.name)["status"] == "stopped"  # type: ignore[index]
