"""Projection and reactor scenarios: real workers over an embedded log of given events."""

from __future__ import annotations

import gc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from eventsource import EventStore, Repository
from eventsource.errors import ConfigurationError, PoisonEvent
from eventsource.testing import ConsumerScenario, FakeClock, Scheduled, given, stream
from tests.testing.domain import (
    GRACE,
    Account,
    AccountFrozen,
    AccountOpened,
    Alert,
    AlertCounts,
    AlertOnLargeDeposits,
    AlertRaised,
    Balances,
    Deposited,
    FreezeOverdrawn,
    Withdrawn,
)

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def opened(owner: str = "ada") -> AccountOpened:
    return AccountOpened(owner=owner)


def deposit(amount: str) -> Deposited:
    return Deposited(amount=Decimal(amount))


def withdraw(amount: str) -> Withdrawn:
    return Withdrawn(amount=Decimal(amount))


# -- projections -------------------------------------------------------------------


def test_a_projection_folds_the_given_events_into_its_rows() -> None:
    clock = FakeClock(START)
    scenario = given(
        Balances,
        stream(Account, "acc-2", opened("grace"), deposit("7")),
        stream("account", "acc-1", opened(), deposit("10"), withdraw("2.5")),
        clock=clock,
    )
    scenario.then_rows(
        Balances.balances,
        [
            {
                "account_id": "acc-1",
                "owner": "ada",
                "balance": Decimal("7.50"),
                "updated_at": START,
            },
            {"account_id": "acc-2", "owner": "grace", "balance": Decimal("7")},
        ],
    )
    # Expected rows naming the key are matched whatever their order.
    scenario.then_rows(
        Balances.balances, [{"account_id": "acc-2", "owner": "grace"}, {"account_id": "acc-1"}]
    )
    assert [r["balance"] for r in scenario.rows(Balances.balances)] == [Decimal("7.5"), Decimal(7)]
    scenario.close()


def test_a_row_mismatch_names_the_row_and_column() -> None:
    with (
        given(Balances, stream(Account, "acc-1", opened(), deposit("3"))) as scenario,
        pytest.raises(AssertionError) as caught,
    ):
        scenario.then_rows(
            Balances.balances,
            [{"account_id": "acc-1", "balance": Decimal("4")}, {"account_id": "acc-9"}],
        )
    assert str(caught.value) == (
        "rows of testing_balances differ from the expected ones (2 expected, 1 in the table):\n"
        "  1. account_id='acc-1': balance: expected Decimal('4'), found Decimal('3.00')\n"
        "  2. missing: {'account_id': 'acc-9'}"
    )


def test_later_events_arrive_at_the_clocks_time() -> None:
    clock = FakeClock(START)
    scenario = given(Balances, stream(Account, "acc-1", opened()), clock=clock)
    clock.advance(hours=3)
    scenario.when(stream(Account, "acc-1", deposit("1")))
    scenario.then_rows(
        Balances.balances, [{"account_id": "acc-1", "updated_at": START + timedelta(hours=3)}]
    )
    # Versions continue the stream: the store's concurrency check accepted them.
    assert [e.version for e in scenario.store.read_events()] == []  # views only: own database
    [orders_store] = [s for c, s in scenario.stores.items() if c == "bank"]
    assert [e.version for e in orders_store.read_events()] == [1, 2]


def test_events_travel_in_the_store_of_the_context_whose_topic_is_read() -> None:
    scenario = given(Balances, stream(Account, "acc-1", opened()))
    assert scenario.context == "test"
    assert set(scenario.stores) == {"test", "bank"}
    assert [e.aggregate_id for e in scenario.stores["bank"].read_events()] == ["acc-1"]
    assert scenario.new_events() == []


def test_a_handler_that_keeps_failing_stops_the_scenario_as_it_stops_the_worker() -> None:
    # A deposit into an account the view has never seen: the handler's assert fails.
    with pytest.raises(PoisonEvent) as caught:
        given(Balances, stream(Account, "acc-1", deposit("1")))
    assert isinstance(caught.value.__cause__, AssertionError)


def test_given_takes_streams_and_consumer_classes() -> None:
    with pytest.raises(ConfigurationError, match=r"stream\(Aggregate, id, \*events\)"):
        given(Balances, opened())  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="Projection or Reactor classes"):
        given(Balances, alongside=[Account])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="Aggregate, Projection or Reactor"):
        given(object)  # type: ignore[call-overload]


# -- reactors ----------------------------------------------------------------------


def bank(*streams: object, **options: object) -> ConsumerScenario:
    options.setdefault("clock", FakeClock(START))
    return given(FreezeOverdrawn, *streams, context="bank", **options)  # type: ignore[arg-type]


def test_a_reactor_schedules_a_deadline_and_it_fires_when_the_clock_reaches_it() -> None:
    scenario = bank(stream(Account, "acc-1", opened(), deposit("5"), withdraw("8")))
    scenario.then().then_scheduled(
        Scheduled("freeze", "acc-1", due_at=START + GRACE, payload={"balance": "-3"})
    )
    scenario.advance(GRACE - timedelta(seconds=1)).then().then_scheduled(
        Scheduled("freeze", "acc-1", due_at=START + GRACE)
    )
    scenario.advance(seconds=1).then(
        stream(Account, "acc-1", AccountFrozen(reason="overdrawn since 2026-03-02"))
    ).then_scheduled()
    # What the reactor saved, it saved in its own store, after the given events.
    account = Repository(scenario.store, Account).get("acc-1")
    assert (account.frozen, account.version) == (True, 4)


def test_events_that_arrive_before_the_deadline_cancel_it() -> None:
    scenario = bank(stream(Account, "acc-1", opened(), withdraw("1")))
    scenario.advance(days=1).when(stream(Account, "acc-1", deposit("1"))).then_scheduled()
    scenario.advance(days=5).then()


def test_a_reactor_mismatch_shows_the_stream_of_each_event() -> None:
    scenario = bank(stream(Account, "acc-1", opened(), withdraw("1"))).advance(GRACE)
    with pytest.raises(AssertionError) as caught:
        scenario.then(stream(Account, "acc-2", AccountFrozen(reason="overdrawn since 2026-03-02")))
    assert str(caught.value) == (
        "new events differ from the expected ones (1 expected, 1 recorded):\n"
        "  1. account:acc-2 AccountFrozen: recorded by account:acc-1, expected account:acc-2"
    )
    with pytest.raises(AssertionError) as caught:
        scenario.then()
    assert str(caught.value) == (
        "new events differ from the expected ones (0 expected, 1 recorded):\n"
        "  1. unexpected: account:acc-1 AccountFrozen(reason='overdrawn since 2026-03-02')"
    )


def test_a_deadline_mismatch_names_the_deadline() -> None:
    scenario = bank(stream(Account, "acc-1", opened(), withdraw("1")))
    with pytest.raises(AssertionError) as caught:
        scenario.then_scheduled(Scheduled("freeze", "acc-1", due_at=START, payload={}))
    assert str(caught.value) == (
        "pending deadlines differ from the expected ones (1 expected, 1 pending):\n"
        "  1. freeze 'acc-1': due_at: expected datetime.datetime(2026, 3, 2, 9, 0,"
        " tzinfo=datetime.timezone.utc), got datetime.datetime(2026, 3, 4, 9, 0,"
        " tzinfo=datetime.timezone.utc); payload: expected {}, got {'balance': '-1'}"
    )
    assert [(d.name, d.key, d.due_at) for d in scenario.scheduled()] == [
        ("freeze", "acc-1", START + GRACE)
    ]


def test_a_reactor_needs_its_own_context_named() -> None:
    with pytest.raises(ConfigurationError, match=r"FreezeOverdrawn saves aggregates of its own"):
        given(FreezeOverdrawn, stream(Account, "acc-1", opened()))


def test_a_reactor_of_another_context_with_a_projection_alongside() -> None:
    """One context's worker process: the reactor's new events feed its projection."""
    scenario = given(
        AlertOnLargeDeposits,
        stream(Account, "acc-1", opened(), deposit("10000"), deposit("5"), deposit("20000")),
        stream(Account, "acc-2", opened(), deposit("1")),
        alongside=[AlertCounts],
        context="alerts",
    )
    scenario.then(
        stream(Alert, "acc-1", AlertRaised(account_id="acc-1", amount=Decimal("10000"))),
        AlertRaised(account_id="acc-1", amount=Decimal("20000")),
    )
    scenario.then_rows(AlertCounts.counts, [{"account_id": "acc-1", "alerts": 2}])
    assert set(scenario.stores) == {"alerts", "bank"}
    assert [e.aggregate_type for e in scenario.stores["bank"].read_events()] == ["account"] * 6
    # The projection's rows live in the context's own database, beside its events.
    with scenario.engine.connect() as conn:
        assert conn.execute(select(AlertCounts.counts.c.alerts)).scalar_one() == 2


def test_an_aggregate_type_read_from_two_contexts_must_say_which() -> None:
    class Both(Balances):
        name = "bank.both"
        topics = ["bank.account", "branch.account"]

    with pytest.raises(ConfigurationError, match=r"contexts \['bank', 'branch'\]"):
        given(Both, stream(Account, "acc-1", opened()))
    scenario = given(Both, stream(Account, "acc-1", opened(), context="branch"))
    assert [e.aggregate_id for e in scenario.stores["branch"].read_events()] == ["acc-1"]
    scenario.then_rows(Both.balances, [{"account_id": "acc-1"}])


def test_a_reactor_runs_on_a_store_the_test_provides(
    event_store_factory: Callable[..., EventStore],
) -> None:
    store = event_store_factory(context="bank")
    scenario = given(
        FreezeOverdrawn, stream(Account, "acc-1", opened(), withdraw("1")), store=store
    )
    assert (scenario.store, scenario.context) == (store, "bank")
    scenario.advance(GRACE).then(
        AccountFrozen(reason=f"overdrawn since {scenario.clock.now() - GRACE:%Y-%m-%d}")
    )
    scenario.close()
    assert Repository(store, Account).get("acc-1").frozen  # the test's store stays open
    with pytest.raises(ConfigurationError, match="context='shop' but the store"):
        given(FreezeOverdrawn, store=store, context="shop")


def test_the_scenarios_databases_are_removed_when_it_is_gone() -> None:
    scenario = given(Balances, stream(Account, "acc-1", opened()))
    files = [Path(str(s.engine.url.database)) for s in scenario.stores.values()]
    assert len(files) == 2
    assert all(f.exists() for f in files)
    del scenario
    gc.collect()
    assert not any(f.exists() or f.parent.exists() for f in files)
    closed = given(Balances, stream(Account, "acc-1", opened()))
    closed.close()
    assert not any(Path(str(s.engine.url.database)).exists() for s in closed.stores.values())


def test_a_reactor_that_starts_at_the_end_of_the_log_sees_the_given_events() -> None:
    class FreezeFromNowOn(FreezeOverdrawn):
        name = "bank.freeze_from_now_on"
        start_at = "end"

    scenario = given(
        FreezeFromNowOn, stream(Account, "acc-1", opened(), withdraw("1")), context="bank"
    )
    assert [d.key for d in scenario.scheduled()] == ["acc-1"]
