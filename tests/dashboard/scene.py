"""The sample app on SQLite, in a state worth looking at on the dashboard.

Four contexts tell the sample app's story; then:

* orders' summary and its unpaid-order reactor have caught up (the reactor
  leaves a deadline pending for each unpaid order);
* `OrderAudit`, an orders projection that parks what it cannot apply, has
  parked o-1003's first event and goes on with the other orders;
* shipping's address book and its reactor have caught up (the reactor's
  shipments carry the orders' correlation ids);
* payments' card attempts never ran: its lag is every payment event;
* payments' transform `payments.card_alerts` has caught up: the declined
  attempts are `card_alerts` events in the payments store.

`python -m tests.dashboard.scene trickle DIR` keeps placing and paying
orders and trying cards in DIR's stores until SIGTERM (the screenshot's
live traffic).
"""

from __future__ import annotations

import signal
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, String, Table

from eventsource import EventStore, Projection, Repository, Settings, View, handles
from eventsource.projections.runner import Runtime, load_class, run_workers
from eventsource.streams.runtime import embedded_worker, load_transform
from sample_app.contexts import CONTEXTS
from sample_app.orders.domain import Order
from sample_app.orders.events import OrderCancelled, OrderPaid, OrderPlaced
from sample_app.payments.domain import Payment
from sample_app.story import tell

ROOT = Path(__file__).resolve().parents[2]
PARKED_ORDER = "o-1003"
AUDIT = "tests.dashboard.scene:OrderAudit"
TRANSFORM = "sample_app.payments.alerts:card_alerts"
# (context, consumers run until caught up, in this order)
CAUGHT_UP = [
    (
        "orders",
        [
            "sample_app.orders.views:OrderSummary",
            "sample_app.orders.timeouts:CancelUnpaidOrders",
            AUDIT,
        ],
    ),
    ("shipping", ["sample_app.shipping.views:AddressBook"]),
    ("shipping", ["sample_app.shipping.reactor:ShipPaidOrders"]),
    ("payments", [TRANSFORM]),
]
NEVER_RUN = "payments=sample_app.payments.views:CardAttempts"
# Every consumer the page shows, as `eventsource dashboard` takes them (context: shipping).
SHOWN = [
    "orders=sample_app.orders.views:OrderSummary",
    "orders=sample_app.orders.timeouts:CancelUnpaidOrders",
    f"orders={AUDIT}",
    "sample_app.shipping.views:AddressBook",
    "sample_app.shipping.reactor:ShipPaidOrders",
    "sample_app.shipping.views:ShipmentsToDispatch",
    NEVER_RUN,
    TRANSFORM,
]

metadata = MetaData()


class AuditFailed(Exception):
    """The audit cannot read this order."""


class OrderAudit(Projection):
    """How many events each order has had; it cannot cope with o-1003 and parks it."""

    name = "orders.audit"
    topics = ["orders.order"]
    on_failure = "park"
    max_retries = 0

    audit = Table(
        "orders_audit",
        metadata,
        Column("order_id", String(100), primary_key=True),
        Column("events", Integer, nullable=False),
    )

    @handles(OrderPlaced, OrderPaid, OrderCancelled)
    def _any(self, event: OrderPlaced | OrderPaid | OrderCancelled, view: View) -> None:
        if event.aggregate_id == PARKED_ORDER:
            raise AuditFailed(f"{PARKED_ORDER}: the audit cannot read this order's total")
        row = view.get(self.audit, event.aggregate_id)
        view.upsert(
            self.audit, order_id=event.aggregate_id, events=(row["events"] if row else 0) + 1
        )


@dataclass(frozen=True)
class Scene:
    data: Path
    urls: dict[str, str]

    def stores_json(self) -> str:
        import orjson

        return orjson.dumps(self.urls).decode()

    def settings(self, context: str) -> Settings:
        return Settings(
            database_url=self.urls[context],
            context=context,
            stores=self.urls,
            kafka_bootstrap_servers=None,
        )

    def count(self, context: str, aggregate_type: str | None = None) -> int:
        """How many events (of `aggregate_type`) `context`'s store holds, counted apart."""
        types = None if aggregate_type is None else [aggregate_type]
        with EventStore(self.urls[context], context=context) as store:
            return len(store.read_log(0, 100_000, aggregate_types=types))


def build(data: Path) -> Scene:
    """The stores under `data`, the story told, and the consumers of `CAUGHT_UP` run."""
    data.mkdir(parents=True, exist_ok=True)
    scene = Scene(data, {ctx: f"sqlite:///{data / ctx}.db" for ctx in CONTEXTS})
    stores = {ctx: EventStore(url, context=ctx) for ctx, url in scene.urls.items()}
    try:
        for store in stores.values():
            store.create_schema()
        tell(stores)
    finally:
        for store in stores.values():
            store.close()
    for context, names in CAUGHT_UP:
        run_until_caught_up(scene, context, names)
    return scene


def run_until_caught_up(scene: Scene, context: str, names: list[str]) -> None:
    with Runtime(scene.settings(context)) as runtime:
        workers = [
            embedded_worker(load_transform(name), runtime, batch_size=100)
            if name == TRANSFORM
            else runtime.worker(load_class(name))
            for name in names
        ]
        run_workers(workers, stop=threading.Event(), until_caught_up=True, lag_interval=0)


def trickle(scene: Scene, stop: threading.Event, *, every: float = 0.25) -> None:
    """Place orders (most of them paid) and try cards, one command every `every` seconds."""
    orders = Repository(EventStore(scene.urls["orders"], context="orders"), Order)
    payments = Repository(EventStore(scene.urls["payments"], context="payments"), Payment)
    n = 0
    while not stop.wait(every):
        n += 1
        order = Order.place(f"o-live-{n}", "c-grace", Decimal("10.00") + n)
        if n % 4:
            order.pay()
        orders.save(order)
        if n % 2 == 0:
            payment = Payment(f"pay-live-{n}")
            payment.attempt("5500000000000004", Decimal("10.00"), datetime.now(UTC), approved=True)
            payments.save(payment)


def main(argv: list[str]) -> None:
    command, data = argv[0], Path(argv[1])
    if command == "build":
        build(data)
        return
    if command == "trickle":
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        scene = Scene(data, {ctx: f"sqlite:///{data / ctx}.db" for ctx in CONTEXTS})
        trickle(scene, stop)
        return
    raise SystemExit(f"usage: {sys.argv[0]} build|trickle DIR")


if __name__ == "__main__":
    main(sys.argv[1:])
