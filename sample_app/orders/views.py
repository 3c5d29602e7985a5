"""The orders context's own read model: one row per order."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, MetaData, Numeric, String, Table

from eventsource import Projection, View, handles
from sample_app.orders.events import OrderCancelled, OrderPaid, OrderPlaced

metadata = MetaData()


class OrderSummary(Projection):
    name = "orders.summary"
    topics = ["orders.order"]

    orders = Table(
        "orders_summary",
        metadata,
        Column("order_id", String(100), primary_key=True),
        Column("customer_id", String(100), nullable=False),
        Column("total", Numeric(12, 2), nullable=False),
        Column("status", String(20), nullable=False),
        Column("placed_at", DateTime(timezone=True), nullable=False),
        Column("closed_at", DateTime(timezone=True)),
    )

    @handles(OrderPlaced)
    def _placed(self, event: OrderPlaced, view: View) -> None:
        view.upsert(
            self.orders,
            order_id=event.aggregate_id,
            customer_id=event.customer_id,
            total=event.total,
            status="placed",
            placed_at=event.occurred_at,
        )

    @handles(OrderPaid)
    def _paid(self, event: OrderPaid, view: View) -> None:
        view.update(self.orders, event.aggregate_id, status="paid", closed_at=event.occurred_at)

    @handles(OrderCancelled)
    def _cancelled(self, event: OrderCancelled, view: View) -> None:
        view.update(
            self.orders, event.aggregate_id, status="cancelled", closed_at=event.occurred_at
        )
