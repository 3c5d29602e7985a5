"""Reactors: their new events and their positions commit together, exactly once."""

from __future__ import annotations

import threading
from uuid import uuid4

import pytest

from eventsource import (
    ConcurrencyError,
    Event,
    Reaction,
    Reactor,
    Repository,
    Worker,
    caused_by,
    handles,
)
from eventsource.errors import PoisonEvent
from tests.conftest import unique
from tests.projections.apps import (
    AuditsBase,
    PjAccount,
    PjAudit,
    PjDeposited,
    PjNoted,
    audits,
)
from tests.projections.conftest import Harness
from tests.projections.streams import (
    assert_reacted_exactly_once,
    consumer_state,
    large_deposits,
    populate,
    reactions,
    read_all,
    stored_positions,
)


def run_reactor(harness: Harness, reactor: Reactor, **options: object) -> int:
    worker = Worker(reactor, harness.log(), store=harness.own_store(), **options)  # type: ignore[arg-type]
    try:
        return worker.run(until_caught_up=True)
    finally:
        worker.close()


def test_a_reactor_saves_aggregates_of_its_own_context_exactly_once(harness: Harness) -> None:
    count = populate(harness.source, events=1500, accounts=40)
    harness.publish()
    cls = audits(harness.context, unique("pj_react"))

    assert run_reactor(harness, cls(), batch_size=100) == count

    records = read_all(harness.source)
    own = harness.own_store()
    assert_reacted_exactly_once(records, own)
    assert {r["audit"] for r in reactions(own)} <= {r.aggregate_id for r in records}
    assert all(r.aggregate_type == "audit" for r in read_all(own))
    assert stored_positions(harness.views, cls.name)
    assert consumer_state(harness.views, cls.name)["kind"] == "reactor"  # type: ignore[index]
    # Running it again reacts to nothing twice.
    assert run_reactor(harness, cls(), batch_size=100) == 0
    assert_reacted_exactly_once(records, own)


def test_reactions_carry_the_causing_event_and_its_correlation(harness: Harness) -> None:
    command = PjNoted(text="a command", event_id=uuid4(), correlation_id=uuid4())
    account = PjAccount.open("corr", "owner-1")
    with caused_by(command):
        account.deposit(80)
        account.deposit(90)
    Repository(harness.source, PjAccount).save(account)
    harness.publish()

    run_reactor(harness, audits(harness.context, unique("pj_corr"))())

    deposits = {str(r.event_id) for r in large_deposits(read_all(harness.source)).values()}
    flags = reactions(harness.own_store())
    assert {f["causation_id"] for f in flags} == deposits
    assert {f["correlation_id"] for f in flags} == {str(command.correlation_id)}
    stored = harness.own_store().read_events()
    assert {str(e.causation_id) for e in stored} == deposits
    assert {e.correlation_id for e in stored} == {command.correlation_id}


def test_the_same_aggregate_twice_in_one_batch_sees_its_own_changes(harness: Harness) -> None:
    repo = Repository(harness.source, PjAccount)
    account = PjAccount.open("busy", "owner-2")
    for amount in (60, 70, 10, 80):
        account.deposit(amount)
    repo.save(account)
    harness.publish()
    cls = audits(harness.context, unique("pj_twice"))
    run_reactor(harness, cls(), batch_size=100)  # one batch holds every deposit
    # And later batches continue from what earlier ones saved.
    account.deposit(99)
    account.deposit(98)
    repo.save(account)
    harness.publish()
    run_reactor(harness, cls(), batch_size=1)

    flags = sorted(reactions(harness.own_store()), key=lambda f: f["version"])
    assert [f["amount"] for f in flags] == [60, 70, 80, 99, 98]
    assert [f["seq"] for f in flags] == [1, 2, 3, 4, 5]
    assert_reacted_exactly_once(read_all(harness.source), harness.own_store())


def test_a_concurrent_writer_of_the_same_aggregates_loses_and_duplicates_nothing(
    harness: Harness,
) -> None:
    populate(harness.source, events=1200, accounts=12)
    harness.publish()
    own = harness.own_store()
    ids = [f"a-{i}" for i in range(12)]
    writes: list[str] = []
    stop = threading.Event()
    failures: list[BaseException] = []

    def writer() -> None:
        # Flags the same audits as the reactor, retrying its own conflicts.
        repo = Repository(own, PjAudit)
        n = 0
        try:
            while not stop.is_set():
                audit_id = ids[n % len(ids)]
                source = f"writer-{n}"
                while True:
                    audit = repo.find(audit_id) or PjAudit(audit_id)
                    audit.flag(source, 1)
                    try:
                        repo.save(audit)
                        break
                    except ConcurrencyError:
                        continue
                writes.append(source)
                n += 1
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        run_reactor(harness, audits(harness.context, unique("pj_race"))(), batch_size=20)
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "a thread the test started is still running"
    assert not failures
    assert writes

    stored = read_all(own)
    by_audit: dict[str, list[int]] = {}
    for record in stored:
        by_audit.setdefault(record.aggregate_id, []).append(record.version)
    for versions in by_audit.values():
        assert sorted(versions) == list(range(1, len(versions) + 1))
    flags = reactions(own)
    written = [f["source_event"] for f in flags if f["source_event"].startswith("writer-")]
    assert sorted(written) == sorted(writes)
    for audit in by_audit:
        seqs = sorted(f["seq"] for f in flags if f["audit"] == audit)
        assert seqs == list(range(1, len(seqs) + 1))
    reactor_flags = [f for f in flags if not f["source_event"].startswith("writer-")]
    wanted = large_deposits(read_all(harness.source))
    assert sorted(f["causation_id"] for f in reactor_flags) == sorted(wanted)


def test_a_conflict_on_save_rolls_the_batch_back_and_retries_it(harness: Harness) -> None:
    populate(harness.source, events=400, accounts=8)
    harness.publish()
    # A deposit whose audit exists already (from an earlier large deposit).
    seen: set[str] = set()
    for target in large_deposits(read_all(harness.source)).values():
        if target.aggregate_id in seen:
            break
        seen.add(target.aggregate_id)
    interfered: list[str] = []

    def touch(self: AuditsBase, event: Event, reaction: Reaction) -> None:
        if event.event_id != target.event_id or interfered:
            return
        # Appends are serialised, so no other writer can run during a batch;
        # here a rival's event lands in the audit's stream, inside the batch's
        # transaction, after the handler loaded the audit: its save conflicts.
        reaction.repository(PjAudit).find(event.aggregate_id)
        rivals = Repository(reaction.store, PjAudit)
        rival = rivals.find(event.aggregate_id, connection=reaction._connection)
        rival = rival or PjAudit(event.aggregate_id)
        rival.flag("rival", 1)
        rivals.save(rival, connection=reaction._connection)
        interfered.append(str(event.event_id))

    cls = audits(harness.context, unique("pj_conflict"), touch=touch)
    run_reactor(harness, cls(), batch_size=50, retry_backoff=0.01)

    assert interfered == [str(target.event_id)]
    # The rival's write went with the failed batch; the retry reacted to everything once.
    assert "rival" not in {f["source_event"] for f in reactions(harness.own_store())}
    assert_reacted_exactly_once(read_all(harness.source), harness.own_store())


@pytest.mark.parametrize("batch_size", [1, 10])
def test_a_reaction_that_always_conflicts_is_poison_not_an_endless_retry(
    harness: Harness, batch_size: int
) -> None:
    """Batches of 1: the second save conflicts with the stored audit. Batches of
    10: both deposits' new audits are saved in one batch, which must fail as
    loudly (keeping one object would silently drop the other's events)."""
    account = PjAccount.open("dup", "owner-3")
    account.deposit(70)
    account.deposit(75)
    Repository(harness.source, PjAccount).save(account)
    harness.publish()

    @handles(PjDeposited)
    def blind(self: Reactor, event: PjDeposited, reaction: Reaction) -> None:
        audit = PjAudit(event.aggregate_id)  # a bug: a new audit instead of the stored one
        audit.flag(str(event.event_id), event.amount)
        reaction.repository(PjAudit).save(audit)

    cls = type(
        "BlindAudits",
        (Reactor,),
        {
            "name": unique("pj_blind"),
            "topics": [harness.topic],
            "max_retries": 2,
            "_deposited": blind,
        },
    )
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            run_reactor(harness, cls(), batch_size=batch_size, retry_backoff=0.01)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the reactor retries a conflict it causes itself forever"
    [error] = outcome
    assert isinstance(error, PoisonEvent)
    assert isinstance(error.error, ConcurrencyError)
    assert error.event_id == next(r for r in read_all(harness.source) if r.version == 3).event_id
    assert consumer_state(harness.views, cls.name)["status"] == "failed"  # type: ignore[index]
