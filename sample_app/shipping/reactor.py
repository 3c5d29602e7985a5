"""When an order is paid, create its shipment, addressed from the local address book."""

from __future__ import annotations

from eventsource import Reaction, Reactor, handles
from sample_app.orders.events import OrderPaid
from sample_app.shipping.domain import Shipment
from sample_app.shipping.views import AddressBook, address_of


class AddressNotYetKnown(Exception):
    """The customer's registration has not reached shipping's address book yet."""


class ShipPaidOrders(Reactor):
    name = "shipping.ship_paid_orders"
    topics = ["orders.order"]
    # The address book is another worker: give it time to catch up.
    max_retries = 8

    @handles(OrderPaid)
    def _paid(self, event: OrderPaid, reaction: Reaction) -> None:
        shipments = reaction.repository(Shipment)
        if shipments.find(event.aggregate_id) is not None:
            return  # one shipment per order, whatever happens upstream
        book = AddressBook.addresses
        row = reaction.query(book.select().where(book.c.customer_id == event.customer_id)).first()
        address = address_of(row._asdict() if row is not None else None)
        if address is None:
            raise AddressNotYetKnown(f"no address for customer {event.customer_id} yet")
        shipments.save(Shipment.create(event.aggregate_id, event.customer_id, address))
