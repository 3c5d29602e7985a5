"""The orders context's published events: other contexts may import these."""

from __future__ import annotations

from decimal import Decimal

from eventsource import Event


class OrderPlaced(Event):
    customer_id: str
    total: Decimal


class OrderPaid(Event):
    customer_id: str
    total: Decimal


class OrderCancelled(Event):
    reason: str
