"""The customers context's published events: other contexts may import these."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from eventsource import Event


class Address(BaseModel):
    model_config = ConfigDict(frozen=True)

    street: str
    city: str
    postcode: str
    country: str


class CustomerRegistered(Event):
    name: str
    email: str
    address: Address


class CustomerAddressChanged(Event):
    address: Address
