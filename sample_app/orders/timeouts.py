"""Cancel orders that are not paid in time: a deadline per placed order.

The deadline is recorded when the order is placed (so it survives restarts)
and run by the worker's scheduler when it falls due. Paying or cancelling
the order first withdraws it.
"""

from __future__ import annotations

import os
from datetime import timedelta

from eventsource import Deadline, Reaction, Reactor, deadline, handles
from sample_app.orders.domain import Order
from sample_app.orders.events import OrderCancelled, OrderPaid, OrderPlaced

DEADLINE = "cancel-unpaid-order"


def unpaid_timeout() -> timedelta:
    """How long an order may stay unpaid (SAMPLE_UNPAID_TIMEOUT seconds; default 15 minutes)."""
    return timedelta(seconds=float(os.environ.get("SAMPLE_UNPAID_TIMEOUT", "900")))


class CancelUnpaidOrders(Reactor):
    name = "orders.cancel_unpaid"
    topics = ["orders.order"]

    def setup(self) -> None:
        self.timeout = unpaid_timeout()

    @handles(OrderPlaced)
    def _placed(self, event: OrderPlaced, reaction: Reaction) -> None:
        reaction.schedule(DEADLINE, event.aggregate_id, event.occurred_at + self.timeout)

    @handles(OrderPaid, OrderCancelled)
    def _settled(self, event: OrderPaid | OrderCancelled, reaction: Reaction) -> None:
        reaction.cancel(DEADLINE, event.aggregate_id)

    @deadline(DEADLINE)
    def _cancel(self, due: Deadline, reaction: Reaction) -> None:
        orders = reaction.repository(Order)
        order = orders.find(due.key)
        if order is not None and order.status == "placed":
            order.cancel(f"not paid within {self.timeout}")
            orders.save(order)
