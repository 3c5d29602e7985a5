"""The shipping context's published events."""

from __future__ import annotations

from eventsource import Event
from sample_app.customers.events import Address


class ShipmentCreated(Event):
    order_id: str
    customer_id: str
    address: Address


class ShipmentDispatched(Event):
    carrier: str
