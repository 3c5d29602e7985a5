"""The `Order` aggregate."""

from __future__ import annotations

from decimal import Decimal

from eventsource import Aggregate, on
from sample_app.orders.events import OrderCancelled, OrderPaid, OrderPlaced


class OrderError(Exception):
    """A command the order's current state does not allow."""


class Order(Aggregate):
    status: str = "new"
    customer_id: str = ""
    total: Decimal = Decimal(0)

    @classmethod
    def place(cls, order_id: str, customer_id: str, total: Decimal) -> Order:
        if total <= 0:
            raise OrderError(f"an order's total must be positive, got {total}")
        order = cls(order_id)
        order.trigger(OrderPlaced(customer_id=customer_id, total=total))
        return order

    def pay(self) -> None:
        if self.status != "placed":
            raise OrderError(f"order {self.id} is {self.status}; only a placed order can be paid")
        self.trigger(OrderPaid(customer_id=self.customer_id, total=self.total))

    def cancel(self, reason: str) -> None:
        if self.status != "placed":
            raise OrderError(f"order {self.id} is {self.status}; only a placed order is cancelled")
        self.trigger(OrderCancelled(reason=reason))

    @on(OrderPlaced)
    def _placed(self, event: OrderPlaced) -> None:
        self.status = "placed"
        self.customer_id = event.customer_id
        self.total = event.total

    @on(OrderPaid)
    def _paid(self, event: OrderPaid) -> None:
        self.status = "paid"

    @on(OrderCancelled)
    def _cancelled(self, event: OrderCancelled) -> None:
        self.status = "cancelled"
