"""The scripted story the demo and the end-to-end tests tell, and what it implies.

Customers register and one moves; orders are placed and some are paid; a card
is tried over and over in a burst. `tell` issues the commands against the
contexts' stores and returns the facts the read models must then show.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from eventsource import EventStore, Repository
from sample_app.customers.domain import Customer
from sample_app.customers.events import Address
from sample_app.orders.domain import Order
from sample_app.payments.domain import Payment

BURST_START = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)

CUSTOMERS = {
    "c-ada": (
        "Ada Lovelace",
        "ada@example.com",
        Address(street="12 St James's Sq", city="London", postcode="SW1Y 4JH", country="GB"),
    ),
    "c-grace": (
        "Grace Hopper",
        "grace@example.com",
        Address(street="1 Navy Yard", city="Arlington", postcode="22202", country="US"),
    ),
    "c-alan": (
        "Alan Turing",
        "alan@example.com",
        Address(street="78 High St", city="Wilmslow", postcode="SK9 1AA", country="GB"),
    ),
    "c-edsger": (
        "Edsger Dijkstra",
        "edsger@example.com",
        Address(street="Nuenen 4", city="Nuenen", postcode="5671", country="NL"),
    ),
    "c-barbara": (
        "Barbara Liskov",
        "barbara@example.com",
        Address(street="32 Vassar St", city="Cambridge", postcode="02139", country="US"),
    ),
}
MOVES = {
    # Ada moves before her orders are paid: her shipments go to the new address.
    "c-ada": Address(street="4 Ockham Park", city="Ockham", postcode="GU23 6NP", country="GB"),
    # Alan moves too; he has no paid order.
    "c-alan": Address(street="43 Adlington Rd", city="Wilmslow", postcode="SK9 2BJ", country="GB"),
}
ORDERS = [
    # order id, customer, total, paid?
    ("o-1001", "c-ada", Decimal("129.90"), True),
    ("o-1002", "c-grace", Decimal("15.00"), True),
    ("o-1003", "c-alan", Decimal("42.00"), False),
    ("o-1004", "c-edsger", Decimal("7.50"), True),
    ("o-1005", "c-ada", Decimal("300.00"), True),
    ("o-1006", "c-barbara", Decimal("88.80"), False),
    ("o-1007", "c-grace", Decimal("19.99"), True),
    ("o-1008", "c-edsger", Decimal("5.00"), False),
]
# card number -> minutes after BURST_START of each authorization attempt
ATTEMPTS = {
    "4111111111111111": [0.0, 0.5, 1.0, 1.5, 2.0],  # 5 in one window: flagged
    "5500000000000004": [0.2, 3.9],  # 2: fine
    "340000000000009": [0.1, 6.0, 11.0, 16.0],  # 4, each in its own window: fine
    "6011000000000004": [20.1, 20.2, 20.3, 24.9],  # 4 in one window: flagged
    "3530111333300000": [30.0, 31.0, 32.0],  # exactly 3: not more than 3
}
# The attempts that were approved (card, minutes); every other one was declined.
APPROVED = {("5500000000000004", 3.9)}


@dataclass
class StoryFacts:
    """What the read models must show once every worker has caught up."""

    addresses: dict[str, Address] = field(default_factory=dict)
    paid_orders: set[str] = field(default_factory=set)
    unpaid_orders: set[str] = field(default_factory=set)
    attempts: dict[str, int] = field(default_factory=dict)
    declines: dict[str, int] = field(default_factory=dict)
    flagged_cards: set[str] = field(default_factory=set)
    last_positions: dict[str, int] = field(default_factory=dict)


def tell(stores: Mapping[str, EventStore]) -> StoryFacts:
    """Issue the story's commands against each context's store."""
    facts = StoryFacts()
    customers = Repository(stores["customers"], Customer)
    orders = Repository(stores["orders"], Order)
    payments = Repository(stores["payments"], Payment)

    registered = [Customer.register(cid, n, e, a) for cid, (n, e, a) in CUSTOMERS.items()]
    facts.last_positions["customers"] = customers.save(*registered)
    facts.addresses = {cid: address for cid, (_, _, address) in CUSTOMERS.items()}

    placed = [Order.place(oid, cid, total) for oid, cid, total, _ in ORDERS]
    facts.last_positions["orders"] = orders.save(*placed)

    for cid, address in MOVES.items():
        customer = customers.get(cid)
        customer.change_address(address)
        facts.last_positions["customers"] = customers.save(customer)
        facts.addresses[cid] = address

    for oid, _, _, paid in ORDERS:
        if paid:
            order = orders.get(oid)
            order.pay()
            facts.last_positions["orders"] = orders.save(order)
            facts.paid_orders.add(oid)
        else:
            facts.unpaid_orders.add(oid)

    attempted = []
    for n, (card, minutes) in enumerate(ATTEMPTS.items()):
        for i, offset in enumerate(minutes):
            payment = Payment(f"pay-{n}-{i}")
            at = BURST_START + timedelta(minutes=offset)
            approved = (card, offset) in APPROVED
            payment.attempt(card, Decimal("49.00"), at, approved=approved)
            attempted.append(payment)
            if not approved:
                facts.declines[card] = facts.declines.get(card, 0) + 1
        facts.attempts[card] = len(minutes)
        windows: dict[int, int] = {}
        for offset in minutes:
            windows[int(offset // 5)] = windows.get(int(offset // 5), 0) + 1
        if max(windows.values()) > 3:
            facts.flagged_cards.add(card)
    facts.last_positions["payments"] = payments.save(*attempted)
    return facts
