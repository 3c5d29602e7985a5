"""The order-like aggregate the benchmarks write and read, and its test data."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

from eventsource import Aggregate, Event, on

EVENTS_PER_ORDER = 10
LINES_PER_ORDER = EVENTS_PER_ORDER - 3  # placed, lines..., paid, shipped


class OrderPlaced(Event):
    event_type = "bench.OrderPlaced"
    customer_id: str
    currency: str
    placed_at: datetime


class LineAdded(Event):
    event_type = "bench.LineAdded"
    sku: str
    quantity: int
    unit_price: Decimal


class OrderPaid(Event):
    event_type = "bench.OrderPaid"
    amount: Decimal
    payment_id: UUID


class OrderShipped(Event):
    event_type = "bench.OrderShipped"
    carrier: str
    tracking_number: str


class Order(Aggregate, type_name="bench_order"):
    status: str = "new"
    customer_id: str = ""
    currency: str = "EUR"
    total: Decimal = Decimal(0)
    line_count: int = 0
    paid: Decimal = Decimal(0)
    tracking_number: str | None = None

    @classmethod
    def place(cls, order_id: str, customer_id: str) -> Order:
        order = cls(order_id)
        order.trigger(
            OrderPlaced(customer_id=customer_id, currency="EUR", placed_at=datetime.now(UTC))
        )
        return order

    def add_line(self, sku: str, quantity: int, unit_price: Decimal) -> None:
        self.trigger(LineAdded(sku=sku, quantity=quantity, unit_price=unit_price))

    def pay(self, payment_id: UUID) -> None:
        self.trigger(OrderPaid(amount=self.total, payment_id=payment_id))

    def ship(self, carrier: str, tracking_number: str) -> None:
        self.trigger(OrderShipped(carrier=carrier, tracking_number=tracking_number))

    @on(OrderPlaced)
    def _placed(self, event: OrderPlaced) -> None:
        self.status = "placed"
        self.customer_id = event.customer_id
        self.currency = event.currency

    @on(LineAdded)
    def _line_added(self, event: LineAdded) -> None:
        self.total += event.unit_price * event.quantity
        self.line_count += 1

    @on(OrderPaid)
    def _paid(self, event: OrderPaid) -> None:
        self.status = "paid"
        self.paid = event.amount

    @on(OrderShipped)
    def _shipped(self, event: OrderShipped) -> None:
        self.status = "shipped"
        self.tracking_number = event.tracking_number


def add_random_line(order: Order, rng: random.Random) -> None:
    price = Decimal(rng.randrange(100, 100_000)) / 100
    order.add_line(f"SKU-{rng.randrange(10**6):06d}", rng.randrange(1, 10), price)


def full_order(order_id: str, rng: random.Random) -> Order:
    """A new order with `EVENTS_PER_ORDER` pending events."""
    order = Order.place(order_id, f"customer-{rng.randrange(10**5)}")
    for _ in range(LINES_PER_ORDER):
        add_random_line(order, rng)
    order.pay(UUID(int=rng.getrandbits(128), version=4))
    order.ship("DHL", f"JD{rng.randrange(10**12):012d}")
    return order


def full_orders(prefix: str, count: int, rng: random.Random) -> list[Order]:
    return [full_order(f"{prefix}-{i}", rng) for i in range(count)]


def placed_orders(prefix: str, count: int, rng: random.Random) -> list[Order]:
    """New orders with one pending event each."""
    return [Order.place(f"{prefix}-{i}", f"customer-{rng.randrange(10**5)}") for i in range(count)]
