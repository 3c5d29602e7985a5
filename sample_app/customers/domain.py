"""The `Customer` aggregate."""

from __future__ import annotations

from eventsource import Aggregate, on
from sample_app.customers.events import Address, CustomerAddressChanged, CustomerRegistered


class CustomerError(Exception):
    """A command the customer's current state does not allow."""


class Customer(Aggregate):
    name: str = ""
    email: str = ""
    address: Address | None = None

    @classmethod
    def register(cls, customer_id: str, name: str, email: str, address: Address) -> Customer:
        if "@" not in email:
            raise CustomerError(f"{email!r} is not an email address")
        customer = cls(customer_id)
        customer.trigger(CustomerRegistered(name=name, email=email, address=address))
        return customer

    def change_address(self, address: Address) -> None:
        if address == self.address:
            return  # nothing happened, so nothing is recorded
        self.trigger(CustomerAddressChanged(address=address))

    @on(CustomerRegistered)
    def _registered(self, event: CustomerRegistered) -> None:
        self.name = event.name
        self.email = event.email
        self.address = event.address

    @on(CustomerAddressChanged)
    def _moved(self, event: CustomerAddressChanged) -> None:
        self.address = event.address
