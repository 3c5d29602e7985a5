"""A small domain whose events the contract tests record: orders with items, customers.

Its event type names are namespaced (`eventsource.contract.*`) so that they
never clash with an application's; its aggregate types are `order` and
`customer`, so a store of context `shop` feeds the topics `shop.order` and
`shop.customer`.
"""

from __future__ import annotations

import random
from decimal import Decimal

from eventsource.aggregates import Aggregate, Repository, on
from eventsource.events import Event, StoredEvent
from eventsource.store import EventStore

ORDER = "order"
CUSTOMER = "customer"


class ContractOrderPlaced(Event):
    event_type = "eventsource.contract.order_placed"

    customer: str
    total: Decimal


class ContractItemAdded(Event):
    event_type = "eventsource.contract.item_added"

    sku: str
    quantity: int


class ContractCustomerRegistered(Event):
    event_type = "eventsource.contract.customer_registered"

    name: str


class ContractOrder(Aggregate, type_name=ORDER):
    items: int = 0

    @classmethod
    def place(cls, order_id: str, customer: str = "c-1") -> ContractOrder:
        order = cls(order_id)
        order.trigger(ContractOrderPlaced(customer=customer, total=Decimal("12.50")))
        return order

    def add(self, sku: str, quantity: int = 1) -> None:
        self.trigger(ContractItemAdded(sku=sku, quantity=quantity))

    @on(ContractOrderPlaced)
    def _placed(self, event: ContractOrderPlaced) -> None:
        self.items = 0

    @on(ContractItemAdded)
    def _added(self, event: ContractItemAdded) -> None:
        self.items += event.quantity


class ContractCustomer(Aggregate, type_name=CUSTOMER):
    name: str = ""

    @classmethod
    def register(cls, customer_id: str, name: str) -> ContractCustomer:
        customer = cls(customer_id)
        customer.trigger(ContractCustomerRegistered(name=name))
        return customer

    @on(ContractCustomerRegistered)
    def _registered(self, event: ContractCustomerRegistered) -> None:
        self.name = event.name


def populate(
    store: EventStore,
    *,
    orders: int = 10,
    items: int = 3,
    customers: int = 3,
    prefix: str = "",
    seed: int = 7,
) -> list[StoredEvent]:
    """Save orders and customers so that aggregates' events interleave in the
    global log; return the records written, in global order."""
    head = store.head_position()
    rng = random.Random(seed)
    order_repo = Repository(store, ContractOrder)
    customer_repo = Repository(store, ContractCustomer)
    placed = [ContractOrder.place(f"{prefix}o-{i}", customer=f"c-{i % 7}") for i in range(orders)]
    order_repo.save(*placed)
    for c in range(customers):
        customer_repo.save(ContractCustomer.register(f"{prefix}c-{c}", f"Zoë €{c}"))
    for round_ in range(items):
        chosen = rng.sample(placed, k=max(1, len(placed) // 2 + 1))
        for order in chosen:
            order.add(f"sku-{round_}", quantity=round_ + 1)
        order_repo.save(*chosen)
        rest = [o for o in placed if o not in chosen]
        for order in rest:
            order.add(f"sku-late-{round_}")
        order_repo.save(*rest)
    return read_all(store, after=head)


def read_all(store: EventStore, after: int = 0) -> list[StoredEvent]:
    """Every record of `store` after global position `after`, in order."""
    out: list[StoredEvent] = []
    while True:
        batch = store.read_log(after, 10_000)
        if not batch:
            return out
        out.extend(batch)
        after = batch[-1].position
