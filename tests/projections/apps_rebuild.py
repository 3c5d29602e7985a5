"""The domains and consumers of the rebuild, dead-letter, wait and deadline tests.

Wallets are opened by an owner and receive deposits. `WalletTotals` folds
them into one row per wallet (events applied, total, last version) and one
row per owner; `fold_wallets` computes the same rows independently, from the
stored records, without any framework code.

Bookings are placed with a payment deadline and may be paid; the reactor
`ExpireUnpaid` schedules an "expire" deadline for each booking placed,
cancels it when the booking is paid, and expires the booking when it falls
due.

Processes started by the tests import `EnvWalletTotals` and `EnvExpireUnpaid`
by path; their names, topics and faults come from `RBTEST_*` variables:

RBTEST_CONTEXT     the source context (topics `<context>.wallet`, `<context>.booking`)
RBTEST_NAME        the consumer's name
RBTEST_POISON      comma-separated deposit amounts whose handler always fails
RBTEST_ON_FAILURE  "stop" (default) or "park"
RBTEST_SLOW        seconds each event takes (to catch a rebuild midway)
RBTEST_VERSION     the projection's version (default 1)
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any, ClassVar

import orjson
from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table

from eventsource import (
    Aggregate,
    Event,
    Projection,
    Reaction,
    Reactor,
    StoredEvent,
    View,
    handles,
    on,
)
from eventsource.projections.deadlines import Deadline, deadline

metadata = MetaData()

# -- wallets ---------------------------------------------------------------------------


class RbOpened(Event):
    event_type = "rb.wallet_opened"

    owner: str


class RbDeposited(Event):
    event_type = "rb.deposited"

    amount: int


class RbWallet(Aggregate, type_name="wallet"):
    owner: str = ""
    total: int = 0

    @classmethod
    def open(cls, wallet_id: str, owner: str) -> RbWallet:
        wallet = cls(wallet_id)
        wallet.trigger(RbOpened(owner=owner))
        return wallet

    def deposit(self, amount: int) -> None:
        self.trigger(RbDeposited(amount=amount))

    @on(RbOpened)
    def _opened(self, event: RbOpened) -> None:
        self.owner = event.owner

    @on(RbDeposited)
    def _deposited(self, event: RbDeposited) -> None:
        self.total += event.amount


wallets_table = Table(
    "rb_wallets",
    metadata,
    Column("wallet", String(100), primary_key=True),
    Column("owner", String(100), nullable=False),
    Column("events", Integer, nullable=False, default=0),
    Column("total", BigInteger, nullable=False, default=0),
    Column("last_version", Integer, nullable=False, default=0),
    Index("rb_wallets_owner_idx", "owner"),
    Index("rb_wallets_owner_total_idx", "owner", "total", unique=False),
)
owners_table = Table(
    "rb_owners",
    metadata,
    Column("owner", String(100), primary_key=True),
    Column("wallets", Integer, nullable=False, default=0),
    Column("total", BigInteger, nullable=False, default=0),
)


class WalletTotalsBase(Projection):
    """One row per wallet and one per owner (subclasses name the topics)."""

    wallets = wallets_table
    owners = owners_table
    poison: ClassVar[frozenset[int]] = frozenset()
    slow: ClassVar[float] = 0.0

    @handles(RbOpened)
    def _opened(self, event: RbOpened, view: View) -> None:
        self._pace()
        view.upsert(
            self.wallets,
            wallet=event.aggregate_id,
            owner=event.owner,
            events=1,
            total=0,
            last_version=event.version,
        )
        owner = view.get(self.owners, event.owner)
        view.upsert(self.owners, owner=event.owner, wallets=(owner["wallets"] if owner else 0) + 1)

    @handles(RbDeposited)
    def _deposited(self, event: RbDeposited, view: View) -> None:
        self._pace()
        if event.amount in type(self).poison:
            raise ValueError(f"cannot take a deposit of {event.amount}")
        row = view.get(self.wallets, event.aggregate_id)
        if row is None:
            raise LookupError(f"no wallet {event.aggregate_id!r}")
        if row["last_version"] >= event.version:
            raise AssertionError(
                f"{event.aggregate_id} version {event.version} applied twice"
                f" (the row is at {row['last_version']})"
            )
        view.upsert(
            self.wallets,
            wallet=event.aggregate_id,
            events=row["events"] + 1,
            total=row["total"] + event.amount,
            last_version=event.version,
        )
        owner = view.get(self.owners, row["owner"])
        assert owner is not None
        view.upsert(self.owners, owner=row["owner"], total=owner["total"] + event.amount)

    def _pace(self) -> None:
        if type(self).slow:
            time.sleep(type(self).slow)


def wallet_totals(context: str, name: str, **attributes: Any) -> type[WalletTotalsBase]:
    """A `WalletTotals` projection called `name` that reads `<context>.wallet`."""
    namespace = {"name": name, "topics": [f"{context}.wallet"], **attributes}
    return type("WalletTotals", (WalletTotalsBase,), namespace)


# Version 2 of the projection: a new required column, `largest` (the largest
# deposit), in tables of its own metadata (the same names as version 1).
metadata_v2 = MetaData()
wallets_table_v2 = Table(
    "rb_wallets",
    metadata_v2,
    Column("wallet", String(100), primary_key=True),
    Column("owner", String(100), nullable=False),
    Column("events", Integer, nullable=False, default=0),
    Column("total", BigInteger, nullable=False, default=0),
    Column("last_version", Integer, nullable=False, default=0),
    Column("largest", BigInteger, nullable=False),
    Index("rb_wallets_owner_idx", "owner"),
    Index("rb_wallets_owner_total_idx", "owner", "total", unique=False),
)
owners_table_v2 = owners_table.to_metadata(metadata_v2)


class WalletTotalsV2Base(Projection):
    """Version 2: the same rows as version 1, plus each wallet's largest deposit."""

    version = 2
    wallets = wallets_table_v2
    owners = owners_table_v2

    @handles(RbOpened)
    def _opened(self, event: RbOpened, view: View) -> None:
        view.upsert(
            self.wallets,
            wallet=event.aggregate_id,
            owner=event.owner,
            events=1,
            total=0,
            last_version=event.version,
            largest=0,
        )
        owner = view.get(self.owners, event.owner)
        view.upsert(self.owners, owner=event.owner, wallets=(owner["wallets"] if owner else 0) + 1)

    @handles(RbDeposited)
    def _deposited(self, event: RbDeposited, view: View) -> None:
        row = view.get(self.wallets, event.aggregate_id)
        if row is None or row["last_version"] >= event.version:
            raise AssertionError(f"{event.aggregate_id} version {event.version} out of order")
        view.upsert(
            self.wallets,
            wallet=event.aggregate_id,
            events=row["events"] + 1,
            total=row["total"] + event.amount,
            last_version=event.version,
            largest=max(row["largest"], event.amount),
        )
        owner = view.get(self.owners, row["owner"])
        assert owner is not None
        view.upsert(self.owners, owner=row["owner"], total=owner["total"] + event.amount)


def wallet_totals_v2(context: str, name: str) -> type[WalletTotalsV2Base]:
    namespace = {"name": name, "topics": [f"{context}.wallet"]}
    return type("WalletTotalsV2", (WalletTotalsV2Base,), namespace)


def fold_wallets(
    records: Iterable[StoredEvent], *, with_largest: bool = False
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The rows of `rb_wallets` and `rb_owners` after `records`, folded by hand."""
    wallets: dict[str, dict[str, Any]] = {}
    owners: dict[str, dict[str, Any]] = {}
    for record in records:
        payload = orjson.loads(record.payload)
        if record.event_type == RbOpened.event_type:
            wallets[record.aggregate_id] = {
                "owner": payload["owner"],
                "events": 1,
                "total": 0,
                "last_version": record.version,
                **({"largest": 0} if with_largest else {}),
            }
            owner = owners.setdefault(payload["owner"], {"wallets": 0, "total": 0})
            owner["wallets"] += 1
        elif record.event_type == RbDeposited.event_type:
            wallet = wallets[record.aggregate_id]
            wallet["events"] += 1
            wallet["total"] += payload["amount"]
            wallet["last_version"] = record.version
            if with_largest:
                wallet["largest"] = max(wallet["largest"], payload["amount"])
            owners[wallet["owner"]]["total"] += payload["amount"]
    return wallets, owners


# -- bookings and their payment deadline -------------------------------------------------


class RbBookingPlaced(Event):
    event_type = "rb.booking_placed"

    pay_by: datetime


class RbBookingPaid(Event):
    event_type = "rb.booking_paid"


class RbBookingExpired(Event):
    event_type = "rb.booking_expired"

    deadline_attempt: int


class RbBooking(Aggregate, type_name="booking"):
    status: str = "new"

    @classmethod
    def place(cls, booking_id: str, pay_by: datetime) -> RbBooking:
        booking = cls(booking_id)
        booking.trigger(RbBookingPlaced(pay_by=pay_by))
        return booking

    def pay(self) -> None:
        self.trigger(RbBookingPaid())

    def expire(self, attempt: int) -> None:
        self.trigger(RbBookingExpired(deadline_attempt=attempt))

    @on(RbBookingPlaced)
    def _placed(self, event: RbBookingPlaced) -> None:
        self.status = "placed"

    @on(RbBookingPaid)
    def _paid(self, event: RbBookingPaid) -> None:
        self.status = "paid"

    @on(RbBookingExpired)
    def _expired(self, event: RbBookingExpired) -> None:
        self.status = "expired"


class ExpireUnpaidBase(Reactor):
    """Expires a booking not paid by its `pay_by` time.

    The deadline handler appends `RbBookingExpired` whatever the booking's
    state, so a deadline that ran twice shows up as two such events.
    `fail_first` makes the first `fail_first` calls of the handler fail
    after `fail_delay` seconds (a handler that hits a transient error).
    """

    fail_first: ClassVar[int] = 0

    def before_expire(self, due: Deadline, reaction: Reaction) -> None:
        """Called first by the deadline's handler; tests add what they watch."""

    fail_delay: ClassVar[float] = 0.0
    calls: ClassVar[int] = 0

    @handles(RbBookingPlaced)
    def _placed(self, event: RbBookingPlaced, reaction: Reaction) -> None:
        reaction.schedule("expire", event.aggregate_id, event.pay_by, {"placed": event.version})

    @handles(RbBookingPaid)
    def _paid(self, event: RbBookingPaid, reaction: Reaction) -> None:
        reaction.cancel("expire", event.aggregate_id)

    @deadline("expire")
    def _expire(self, due: Deadline, reaction: Reaction) -> None:
        self.before_expire(due, reaction)
        cls = type(self)
        cls.calls += 1
        if cls.calls <= cls.fail_first:
            time.sleep(cls.fail_delay)
            raise RuntimeError(f"transient failure {cls.calls} of the expire handler")
        bookings = reaction.repository(RbBooking)
        booking = bookings.get(due.key)
        booking.expire(due.attempts + 1)
        bookings.save(booking)


def expire_unpaid(context: str, name: str, **attributes: Any) -> type[ExpireUnpaidBase]:
    """An `ExpireUnpaid` reactor called `name` that reads `<context>.booking`."""
    namespace = {"name": name, "topics": [f"{context}.booking"], "calls": 0, **attributes}
    return type("ExpireUnpaid", (ExpireUnpaidBase,), namespace)


# -- what processes run -------------------------------------------------------------------

ENV_CONTEXT = os.environ.get("RBTEST_CONTEXT", "rbtest")


def _env_poison() -> frozenset[int]:
    text = os.environ.get("RBTEST_POISON", "")
    return frozenset(int(p) for p in text.split(",") if p.strip())


class EnvWalletTotals(WalletTotalsBase):
    name = os.environ.get("RBTEST_NAME", "rb_env_wallet_totals")
    topics = [f"{ENV_CONTEXT}.wallet"]
    version = int(os.environ.get("RBTEST_VERSION", "1"))
    on_failure = os.environ.get("RBTEST_ON_FAILURE", "stop")
    max_retries = 1
    poison = _env_poison()
    slow = float(os.environ.get("RBTEST_SLOW", "0"))


class EnvExpireUnpaid(ExpireUnpaidBase):
    name = os.environ.get("RBTEST_NAME", "rb_env_expire_unpaid")
    topics = [f"{ENV_CONTEXT}.booking"]
