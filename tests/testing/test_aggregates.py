"""Aggregate scenarios: given past events, when a command runs, then new events or an error."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from eventsource.errors import MissingHandler, UnknownEventType
from eventsource.events import EventCodec, EventRegistry
from eventsource.testing import FakeClock, given
from tests.testing.domain import (
    Account,
    AccountError,
    AccountFrozen,
    AccountOpened,
    Deposited,
    NoteAdded,
    Withdrawn,
)

OPENED = AccountOpened(owner="ada")


def test_a_command_on_past_events_records_the_expected_events() -> None:
    account = (
        given(Account, OPENED, Deposited(amount=Decimal("10")), id="acc-1")
        .when(lambda a: a.withdraw(Decimal("4")))
        .then(Withdrawn(amount=Decimal("4.00")))
    )
    # `then` hands back the aggregate, its state built by the handlers.
    assert (account.id, account.balance, account.version) == ("acc-1", Decimal("6"), 3)


def test_events_are_compared_by_their_own_fields_not_metadata() -> None:
    outcome = given(Account, OPENED).when(lambda a: a.deposit(Decimal("5")))
    [recorded] = outcome.events
    assert (recorded.aggregate_id, recorded.version) == ("account-1", 2)
    # An expected event carries no metadata at all, and still matches.
    outcome.then(Deposited(amount=Decimal("5")))


def test_a_factory_command_with_no_past_events() -> None:
    account = (
        given(Account)
        .when(lambda _: Account.open("acc-9", "grace"))
        .then(AccountOpened(owner="grace"))
    )
    assert account.id == "acc-9"


def test_no_arguments_means_nothing_was_recorded() -> None:
    given(Account, OPENED, AccountFrozen(reason="x")).when(lambda a: a.freeze("again")).then()


def test_a_mismatch_lists_each_event_and_how_it_differs() -> None:
    outcome = given(Account, OPENED).when(lambda a: a.deposit(Decimal("5")))
    with pytest.raises(AssertionError) as caught:
        outcome.then(Deposited(amount=Decimal("6")), Withdrawn(amount=Decimal("1")))
    assert str(caught.value) == (
        "new events differ from the expected ones (2 expected, 1 recorded):\n"
        "  1. Deposited: amount: expected Decimal('6'), got Decimal('5')\n"
        "  2. missing: Withdrawn(amount=Decimal('1'))"
    )


def test_a_mismatch_names_unexpected_events_and_other_types() -> None:
    def both(account: Account) -> None:
        account.deposit(Decimal("5"))
        account.withdraw(Decimal("2"))

    outcome = given(Account, OPENED).when(both)
    with pytest.raises(AssertionError) as caught:
        outcome.then(AccountFrozen(reason="no"))
    assert str(caught.value) == (
        "new events differ from the expected ones (1 expected, 2 recorded):\n"
        "  1. AccountFrozen: expected AccountFrozen(reason='no'),"
        " got Deposited(amount=Decimal('5'))\n"
        "  2. unexpected: Withdrawn(amount=Decimal('2'))"
    )
    with pytest.raises(
        AssertionError, match=r"expected, 2 recorded\):\n  1. Deposited: as expected"
    ):
        outcome.then(Deposited(amount=Decimal("5")))


def test_then_raises_returns_the_error() -> None:
    error = (
        given(Account, OPENED, AccountFrozen(reason="fraud"), id="acc-2")
        .when(lambda a: a.withdraw(Decimal("1")))
        .then_raises(AccountError, match="acc-2 is frozen")
    )
    assert isinstance(error, AccountError)


def test_then_raises_fails_when_the_command_succeeds_or_raises_something_else() -> None:
    succeeded = given(Account, OPENED).when(lambda a: a.deposit(Decimal("1")))
    with pytest.raises(AssertionError) as caught:
        succeeded.then_raises(AccountError)
    assert str(caught.value) == (
        "expected AccountError, but the command succeeded and recorded"
        " Deposited(amount=Decimal('1'))"
    )
    failed = given(Account, OPENED).when(lambda a: a.deposit(Decimal("-1")))
    with pytest.raises(AssertionError, match="expected KeyError or TypeError, but the command"):
        failed.then_raises((KeyError, TypeError))
    with pytest.raises(AssertionError, match=r"does not match 'positive, got 1\$'"):
        failed.then_raises(AccountError, match="positive, got 1$")


def test_then_fails_with_the_error_the_command_raised() -> None:
    outcome = given(Account, OPENED).when(lambda a: a.deposit(Decimal("0")))
    with pytest.raises(AssertionError, match="expected 1 new event, but the command raised") as c:
        outcome.then(Deposited(amount=Decimal("0")))
    assert isinstance(c.value.__cause__, AccountError)


def test_a_new_event_that_does_not_survive_storing_fails() -> None:
    outcome = given(Account, OPENED).when(lambda a: a.note(rate=Decimal("1.5")))
    with pytest.raises(AssertionError) as caught:
        outcome.then(NoteAdded(data={"rate": Decimal("1.5")}))
    assert str(caught.value) == (
        "NoteAdded does not survive storing: data: recorded {'rate': Decimal('1.5')},"
        " loaded back {'rate': '1.5'}"
    )


def test_past_events_are_loaded_as_the_store_would_load_them() -> None:
    clock = FakeClock(datetime(2026, 5, 1, 8, 30, tzinfo=UTC))
    scenario = given(Account, OPENED, Deposited(amount=Decimal("2.50")), id="acc-3", clock=clock)
    assert [(e.version, e.aggregate_id, e.aggregate_type) for e in scenario.history] == [
        (1, "acc-3", "account"),
        (2, "acc-3", "account"),
    ]
    assert all(e.occurred_at == clock.now() and e.is_recorded for e in scenario.history)
    # Each `when` starts from a fresh aggregate: commands do not leak into each other.
    scenario.when(lambda a: a.deposit(Decimal("1"))).then(Deposited(amount=Decimal("1")))
    assert scenario.when(lambda a: None).then().balance == Decimal("2.50")


def test_past_events_go_through_the_codec_given() -> None:
    with pytest.raises(UnknownEventType, match=r"testing\.account_opened"):
        given(Account, OPENED, codec=EventCodec(EventRegistry()))


def test_a_past_event_the_aggregate_cannot_apply_is_an_error() -> None:
    from tests.testing.domain import AlertRaised

    with pytest.raises(MissingHandler, match=r"no @on\(AlertRaised\)"):
        given(Account, AlertRaised(account_id="a", amount=Decimal(1))).when(lambda a: None)
