"""Shipping's read models, in shipping's own database.

`AddressBook` is shipping's local copy of where customers live, built from
the customers' events: shipping never asks the customers context at query
time. The copy is personal data: when the customers context forgets a
customer, its `PersonalDataForgotten` notice removes the row, and a rebuild
replays the customer's events with their addresses gone (None).
`ShipmentsToDispatch` lists shipments with where they go.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, MetaData, String, Table

from eventsource import PersonalDataForgotten, Projection, View, handles
from sample_app.customers.events import Address, CustomerAddressChanged, CustomerRegistered
from sample_app.shipping.events import ShipmentCreated, ShipmentDispatched

metadata = MetaData()


class AddressBook(Projection):
    name = "shipping.address_book"
    topics = ["customers.customer", "customers.personal_data"]

    addresses = Table(
        "shipping_address_book",
        metadata,
        Column("customer_id", String(100), primary_key=True),
        Column("name", String(200), nullable=False),
        Column("street", String(200), nullable=False),
        Column("city", String(100), nullable=False),
        Column("postcode", String(20), nullable=False),
        Column("country", String(2), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )

    @handles(CustomerRegistered)
    def _registered(self, event: CustomerRegistered, view: View) -> None:
        if event.address is None:
            return  # the customer has been forgotten: nothing to copy
        view.upsert(
            self.addresses,
            customer_id=event.aggregate_id,
            name=event.name,
            updated_at=event.occurred_at,
            **event.address.model_dump(),
        )

    @handles(CustomerAddressChanged)
    def _moved(self, event: CustomerAddressChanged, view: View) -> None:
        if event.address is None:
            return  # forgotten
        view.update(
            self.addresses,
            event.aggregate_id,
            updated_at=event.occurred_at,
            **event.address.model_dump(),
        )

    @handles(PersonalDataForgotten)
    def _forgotten(self, event: PersonalDataForgotten, view: View) -> None:
        view.delete(self.addresses, event.aggregate_id)


def address_of(row: dict[str, object] | None) -> Address | None:
    """The `Address` in an address-book row."""
    if row is None:
        return None
    return Address(
        street=str(row["street"]),
        city=str(row["city"]),
        postcode=str(row["postcode"]),
        country=str(row["country"]),
    )


class ShipmentsToDispatch(Projection):
    name = "shipping.to_dispatch"
    topics = ["shipping.shipment"]

    shipments = Table(
        "shipping_to_dispatch",
        metadata,
        Column("order_id", String(100), primary_key=True),
        Column("customer_id", String(100), nullable=False),
        Column("street", String(200), nullable=False),
        Column("city", String(100), nullable=False),
        Column("postcode", String(20), nullable=False),
        Column("country", String(2), nullable=False),
        Column("status", String(20), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )

    @handles(ShipmentCreated)
    def _created(self, event: ShipmentCreated, view: View) -> None:
        view.upsert(
            self.shipments,
            order_id=event.order_id,
            customer_id=event.customer_id,
            status="ready",
            created_at=event.occurred_at,
            **event.address.model_dump(),
        )

    @handles(ShipmentDispatched)
    def _dispatched(self, event: ShipmentDispatched, view: View) -> None:
        view.update(self.shipments, event.aggregate_id, status="dispatched")
