"""The customers context, tested with `eventsource.testing`."""

from __future__ import annotations

from eventsource.testing import given
from sample_app.customers.domain import Customer, CustomerError
from sample_app.customers.events import Address, CustomerAddressChanged, CustomerRegistered

LONDON = Address(street="12 St James's Sq", city="London", postcode="SW1Y 4JH", country="GB")
OCKHAM = Address(street="4 Ockham Park", city="Ockham", postcode="GU23 6NP", country="GB")
REGISTERED = CustomerRegistered(name="Ada Lovelace", email="ada@example.com", address=LONDON)


def test_registering_a_customer() -> None:
    customer = (
        given(Customer)
        .when(lambda _: Customer.register("c-ada", "Ada Lovelace", "ada@example.com", LONDON))
        .then(REGISTERED)
    )
    assert (customer.id, customer.name, customer.address) == ("c-ada", "Ada Lovelace", LONDON)


def test_a_customer_needs_an_email_address() -> None:
    given(Customer).when(
        lambda _: Customer.register("c-ada", "Ada", "ada.example.com", LONDON)
    ).then_raises(CustomerError, match="'ada.example.com' is not an email address")


def test_moving_records_the_new_address() -> None:
    customer = (
        given(Customer, REGISTERED, id="c-ada")
        .when(lambda c: c.change_address(OCKHAM))
        .then(CustomerAddressChanged(address=OCKHAM))
    )
    assert customer.address == OCKHAM


def test_moving_to_where_one_lives_records_nothing() -> None:
    moved = given(Customer, REGISTERED, CustomerAddressChanged(address=OCKHAM))
    moved.when(lambda c: c.change_address(OCKHAM)).then()
    moved.when(lambda c: c.change_address(LONDON)).then(CustomerAddressChanged(address=LONDON))
