"""The shipping context, tested with `eventsource.testing`: its address book, its
reactor and the shipments it lists, reading the other contexts' events only."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from eventsource.errors import PoisonEvent
from eventsource.testing import ConsumerScenario, FakeClock, given, stream
from sample_app.customers.events import Address, CustomerAddressChanged, CustomerRegistered
from sample_app.orders.events import OrderPaid, OrderPlaced
from sample_app.shipping.domain import Shipment, ShipmentError
from sample_app.shipping.events import ShipmentCreated, ShipmentDispatched
from sample_app.shipping.reactor import AddressNotYetKnown, ShipPaidOrders
from sample_app.shipping.views import AddressBook, ShipmentsToDispatch

LONDON = Address(street="12 St James's Sq", city="London", postcode="SW1Y 4JH", country="GB")
OCKHAM = Address(street="4 Ockham Park", city="Ockham", postcode="GU23 6NP", country="GB")
MORNING = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def registered(address: Address = LONDON) -> CustomerRegistered:
    return CustomerRegistered(name="Ada Lovelace", email="ada@example.com", address=address)


def placed_and_paid(total: str = "129.90") -> tuple[OrderPlaced, OrderPaid]:
    return (
        OrderPlaced(customer_id="c-ada", total=Decimal(total)),
        OrderPaid(customer_id="c-ada", total=Decimal(total)),
    )


# -- the shipment ----------------------------------------------------------------------


def test_a_shipment_is_created_ready_and_dispatched_once() -> None:
    created = ShipmentCreated(order_id="o-1", customer_id="c-ada", address=LONDON)
    shipment = given(Shipment).when(lambda _: Shipment.create("o-1", "c-ada", LONDON)).then(created)
    assert (shipment.id, shipment.status) == ("o-1", "ready")
    given(Shipment, created, id="o-1").when(lambda s: s.dispatch("DHL")).then(
        ShipmentDispatched(carrier="DHL")
    )
    given(Shipment, created, ShipmentDispatched(carrier="DHL"), id="o-1").when(
        lambda s: s.dispatch("UPS")
    ).then_raises(ShipmentError, match="o-1 is dispatched, not ready")


# -- the address book ------------------------------------------------------------------


def test_the_address_book_keeps_each_customers_latest_address() -> None:
    clock = FakeClock(MORNING)
    book = given(AddressBook, stream("customer", "c-ada", registered()), clock=clock)
    clock.advance(days=1)
    book.when(stream("customer", "c-ada", CustomerAddressChanged(address=OCKHAM)))
    book.then_rows(
        AddressBook.addresses,
        [
            {
                "customer_id": "c-ada",
                "name": "Ada Lovelace",
                "street": "4 Ockham Park",
                "city": "Ockham",
                "postcode": "GU23 6NP",
                "country": "GB",
                "updated_at": clock.now(),
            }
        ],
    )


# -- shipping paid orders --------------------------------------------------------------


def shipping(*streams: object) -> ConsumerScenario:
    """Shipping's worker process: the address book, the reactor and the dispatch list."""
    return given(
        ShipPaidOrders,
        *streams,  # type: ignore[arg-type]
        alongside=[AddressBook, ShipmentsToDispatch],
        context="shipping",
        clock=FakeClock(MORNING),
    )


def test_a_paid_order_gets_a_shipment_to_the_customers_address() -> None:
    scenario = shipping(
        stream("customer", "c-ada", registered()),
        stream("order", "o-1", *placed_and_paid()),
    )
    scenario.then(
        stream(
            Shipment, "o-1", ShipmentCreated(order_id="o-1", customer_id="c-ada", address=LONDON)
        )
    )
    scenario.then_rows(
        ShipmentsToDispatch.shipments,
        [{"order_id": "o-1", "customer_id": "c-ada", "street": LONDON.street, "status": "ready"}],
    )


def test_an_unpaid_order_gets_no_shipment() -> None:
    scenario = shipping(
        stream("customer", "c-ada", registered()),
        stream("order", "o-1", OrderPlaced(customer_id="c-ada", total=Decimal("5"))),
    )
    scenario.then().then_rows(ShipmentsToDispatch.shipments, [])


def test_a_customer_who_moved_before_paying_gets_the_new_address() -> None:
    placed, paid = placed_and_paid()
    scenario = shipping(stream("customer", "c-ada", registered()), stream("order", "o-1", placed))
    scenario.when(stream("customer", "c-ada", CustomerAddressChanged(address=OCKHAM)))
    scenario.when(stream("order", "o-1", paid)).then(
        ShipmentCreated(order_id="o-1", customer_id="c-ada", address=OCKHAM)
    )


def test_an_order_paid_twice_upstream_still_gets_one_shipment() -> None:
    placed, paid = placed_and_paid()
    scenario = shipping(
        stream("customer", "c-ada", registered()), stream("order", "o-1", placed, paid)
    )
    scenario.when(stream("order", "o-1", paid)).then()
    assert len(scenario.rows(ShipmentsToDispatch.shipments)) == 1


def test_a_paid_order_of_a_customer_shipping_has_not_heard_of_stops_the_reactor() -> None:
    """The address book may lag: the reactor retries, then stops rather than skip the order."""
    with pytest.raises(PoisonEvent) as stopped:
        shipping(stream("order", "o-1", *placed_and_paid()))
    assert isinstance(stopped.value.__cause__, AddressNotYetKnown)
