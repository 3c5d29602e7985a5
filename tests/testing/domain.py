"""A small bank for the toolkit's own tests: accounts in context `bank`, alerts in `alerts`."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, DateTime, Integer, MetaData, Numeric, String, Table

from eventsource import (
    Aggregate,
    Deadline,
    Event,
    Projection,
    Reaction,
    Reactor,
    View,
    deadline,
    handles,
    on,
)

GRACE = timedelta(days=2)
LARGE = Decimal("10000")


class AccountOpened(Event):
    event_type = "testing.account_opened"
    owner: str


class Deposited(Event):
    event_type = "testing.deposited"
    amount: Decimal


class Withdrawn(Event):
    event_type = "testing.withdrawn"
    amount: Decimal


class AccountFrozen(Event):
    event_type = "testing.account_frozen"
    reason: str


class NoteAdded(Event):
    event_type = "testing.note_added"
    # Anything goes in: a Decimal here comes back from JSON as a string.
    data: dict[str, Any]


class AlertRaised(Event):
    event_type = "testing.alert_raised"
    account_id: str
    amount: Decimal


class AccountError(Exception):
    pass


class Account(Aggregate):
    owner: str = ""
    balance: Decimal = Decimal(0)
    frozen: bool = False

    @classmethod
    def open(cls, account_id: str, owner: str) -> Account:
        account = cls(account_id)
        account.trigger(AccountOpened(owner=owner))
        return account

    def deposit(self, amount: Decimal) -> None:
        if amount <= 0:
            raise AccountError(f"a deposit must be positive, got {amount}")
        self.trigger(Deposited(amount=amount))

    def withdraw(self, amount: Decimal) -> None:
        if self.frozen:
            raise AccountError(f"account {self.id} is frozen")
        self.trigger(Withdrawn(amount=amount))

    def freeze(self, reason: str) -> None:
        if not self.frozen:
            self.trigger(AccountFrozen(reason=reason))

    def note(self, **data: Any) -> None:
        self.trigger(NoteAdded(data=data))

    @on(AccountOpened)
    def _opened(self, event: AccountOpened) -> None:
        self.owner = event.owner

    @on(Deposited)
    def _deposited(self, event: Deposited) -> None:
        self.balance += event.amount

    @on(Withdrawn)
    def _withdrawn(self, event: Withdrawn) -> None:
        self.balance -= event.amount

    @on(AccountFrozen)
    def _frozen(self, event: AccountFrozen) -> None:
        self.frozen = True

    @on(NoteAdded)
    def _noted(self, event: NoteAdded) -> None:
        pass


class Alert(Aggregate):
    raised: int = 0

    def raise_for(self, account_id: str, amount: Decimal) -> None:
        self.trigger(AlertRaised(account_id=account_id, amount=amount))

    @on(AlertRaised)
    def _raised(self, event: AlertRaised) -> None:
        self.raised += 1


metadata = MetaData()


class Balances(Projection):
    name = "bank.balances"
    topics = ["bank.account"]

    balances = Table(
        "testing_balances",
        metadata,
        Column("account_id", String(50), primary_key=True),
        Column("owner", String(50), nullable=False),
        Column("balance", Numeric(12, 2), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )

    @handles(AccountOpened)
    def _opened(self, event: AccountOpened, view: View) -> None:
        view.upsert(
            self.balances,
            account_id=event.aggregate_id,
            owner=event.owner,
            balance=Decimal(0),
            updated_at=event.occurred_at,
        )

    @handles(Deposited, Withdrawn)
    def _moved(self, event: Deposited | Withdrawn, view: View) -> None:
        row = view.get(self.balances, event.aggregate_id)
        assert row is not None
        sign = 1 if isinstance(event, Deposited) else -1
        view.update(
            self.balances,
            event.aggregate_id,
            balance=row["balance"] + sign * event.amount,
            updated_at=event.occurred_at,
        )


class FreezeOverdrawn(Reactor):
    """An account overdrawn for two days is frozen, unless money comes in first."""

    name = "bank.freeze_overdrawn"
    topics = ["bank.account"]

    @handles(Withdrawn, Deposited)
    def _moved(self, event: Withdrawn | Deposited, reaction: Reaction) -> None:
        account = reaction.repository(Account).get(event.aggregate_id)
        if account.balance < 0:
            if isinstance(event, Withdrawn):
                reaction.schedule(
                    "freeze",
                    account.id,
                    event.occurred_at + GRACE,
                    {"balance": str(account.balance)},
                )
        else:
            reaction.cancel("freeze", account.id)

    @deadline("freeze")
    def _freeze(self, due: Deadline, reaction: Reaction) -> None:
        accounts = reaction.repository(Account)
        account = accounts.get(due.key)
        if account.balance < 0:
            account.freeze(f"overdrawn since {due.due_at - GRACE:%Y-%m-%d}")
            accounts.save(account)


class AlertOnLargeDeposits(Reactor):
    """In the alerts context: an alert per large deposit."""

    name = "alerts.large_deposits"
    topics = ["bank.account"]

    @handles(Deposited)
    def _deposited(self, event: Deposited, reaction: Reaction) -> None:
        if event.amount >= LARGE:
            alerts = reaction.repository(Alert)
            alert = alerts.find(event.aggregate_id) or Alert(event.aggregate_id)
            alert.raise_for(event.aggregate_id, event.amount)
            alerts.save(alert)


class AlertCounts(Projection):
    """In the alerts context: how many alerts each account has had."""

    name = "alerts.counts"
    topics = ["alerts.alert"]

    counts = Table(
        "testing_alert_counts",
        metadata,
        Column("account_id", String(50), primary_key=True),
        Column("alerts", Integer, nullable=False),
    )

    @handles(AlertRaised)
    def _raised(self, event: AlertRaised, view: View) -> None:
        view.increment(self.counts, event.account_id, alerts=1)
