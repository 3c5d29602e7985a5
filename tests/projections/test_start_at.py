"""Where a consumer with no positions yet starts: the beginning, or the end of the log."""

from __future__ import annotations

import pytest

from eventsource import ConfigurationError, Reactor, Worker
from tests.conftest import unique
from tests.projections.apps import audits, balances
from tests.projections.conftest import Harness
from tests.projections.streams import (
    large_deposits,
    populate,
    reactions,
    read_all,
    stored_positions,
)
from tests.projections.test_reactor import run_reactor


def test_a_reactor_that_starts_at_the_end_reacts_to_nothing_of_history(harness: Harness) -> None:
    populate(harness.source, events=600, accounts=20, prefix="old")
    harness.publish()
    cls = audits(harness.context, unique("pj_fromend"), start_at="end")

    assert run_reactor(harness, cls()) == 0
    assert reactions(harness.own_store()) == []
    # Its starting point is stored at once: what arrives while it is down is
    # reacted to after a restart, not skipped by a later end.
    assert stored_positions(harness.views, cls.name)
    old = {r.event_id for r in read_all(harness.source)}
    populate(harness.source, events=400, accounts=10, prefix="new", seed=3)
    harness.publish()

    applied = run_reactor(harness, cls())

    new = {str(e) for e in {r.event_id for r in read_all(harness.source)} - old}
    wanted = {k for k in large_deposits(read_all(harness.source)) if k in new}
    caused = {r["causation_id"] for r in reactions(harness.own_store())}
    assert applied == len(new)
    assert wanted
    assert caused == wanted


def test_a_projection_starts_at_the_beginning_by_default(harness: Harness) -> None:
    count = populate(harness.source, events=300, accounts=10)
    harness.publish()
    cls = balances(harness.context, unique("pj_frombegin"))
    assert cls.start_at == "beginning"
    worker = Worker(cls(), harness.log(), engine=harness.views)
    try:
        assert worker.run(until_caught_up=True) == count
    finally:
        worker.close()


def test_start_at_takes_only_beginning_or_end() -> None:
    with pytest.raises(ConfigurationError, match="start_at"):
        type("Bad", (Reactor,), {"topics": ["a.b"], "start_at": "latest"})


def test_starting_at_the_end_works_on_an_in_memory_store() -> None:
    # One connection serves the log and the positions: the ends must be read
    # outside the positions' transaction.
    from eventsource import EventStore, Repository
    from eventsource.bus.sqllog import SqlLogConsumer
    from tests.projections.apps import PjAccount

    with EventStore("sqlite://", context="memo") as store:
        store.create_schema()
        Repository(store, PjAccount).save(PjAccount.open("m-1", "owner"))
        cls = audits("memo", unique("pj_memory"), start_at="end")
        worker = Worker(cls(), SqlLogConsumer({"memo": store}), store=store)
        assert worker.run(until_caught_up=True) == 0
        account = Repository(store, PjAccount).get("m-1")
        account.deposit(80)
        Repository(store, PjAccount).save(account)
        assert worker.run(until_caught_up=True) >= 1
