"""The customers context's published events: other contexts may import these.

Names, email addresses and postal addresses are personal data of the
customer (the aggregate's id): stored sealed, and unreadable everywhere once
the customers context forgets the customer (`eventsource forget c-ada`).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict

from eventsource import Event, PersonalData


class Address(BaseModel):
    model_config = ConfigDict(frozen=True)

    street: str
    city: str
    postcode: str
    country: str


class CustomerRegistered(Event):
    name: Annotated[str, PersonalData()]
    email: Annotated[str, PersonalData()]
    address: Annotated[Address | None, PersonalData()]  # None once forgotten


class CustomerAddressChanged(Event):
    address: Annotated[Address | None, PersonalData()]
