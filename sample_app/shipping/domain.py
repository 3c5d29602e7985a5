"""The `Shipment` aggregate: one per paid order (its id is the order's id)."""

from __future__ import annotations

from eventsource import Aggregate, on
from sample_app.customers.events import Address
from sample_app.shipping.events import ShipmentCreated, ShipmentDispatched


class ShipmentError(Exception):
    """A command the shipment's current state does not allow."""


class Shipment(Aggregate):
    status: str = "new"
    order_id: str = ""
    customer_id: str = ""
    address: Address | None = None

    @classmethod
    def create(cls, order_id: str, customer_id: str, address: Address) -> Shipment:
        shipment = cls(order_id)
        shipment.trigger(
            ShipmentCreated(order_id=order_id, customer_id=customer_id, address=address)
        )
        return shipment

    def dispatch(self, carrier: str) -> None:
        if self.status != "ready":
            raise ShipmentError(f"shipment {self.id} is {self.status}, not ready")
        self.trigger(ShipmentDispatched(carrier=carrier))

    @on(ShipmentCreated)
    def _created(self, event: ShipmentCreated) -> None:
        self.status = "ready"
        self.order_id = event.order_id
        self.customer_id = event.customer_id
        self.address = event.address

    @on(ShipmentDispatched)
    def _dispatched(self, event: ShipmentDispatched) -> None:
        self.status = "dispatched"
