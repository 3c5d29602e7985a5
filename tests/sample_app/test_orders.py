"""The orders context, tested with `eventsource.testing`: the order, its summary, its deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from eventsource.testing import FakeClock, Scheduled, given, stream
from sample_app.orders.domain import Order, OrderError
from sample_app.orders.events import OrderCancelled, OrderPaid, OrderPlaced
from sample_app.orders.timeouts import DEADLINE, CancelUnpaidOrders
from sample_app.orders.views import OrderSummary

PLACED = OrderPlaced(customer_id="c-ada", total=Decimal("129.90"))
PAID = OrderPaid(customer_id="c-ada", total=Decimal("129.90"))
NOON = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
TIMEOUT = timedelta(minutes=15)


@pytest.fixture(autouse=True)
def _fifteen_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAMPLE_UNPAID_TIMEOUT", str(TIMEOUT.total_seconds()))


# -- the aggregate -------------------------------------------------------------------


def test_placing_an_order() -> None:
    order = given(Order).when(lambda _: Order.place("o-1", "c-ada", Decimal("129.90"))).then(PLACED)
    assert (order.id, order.status, order.total) == ("o-1", "placed", Decimal("129.90"))


@pytest.mark.parametrize("total", [Decimal(0), Decimal("-5")])
def test_an_order_must_have_a_positive_total(total: Decimal) -> None:
    given(Order).when(lambda _: Order.place("o-1", "c-ada", total)).then_raises(
        OrderError, match="must be positive"
    )


def test_paying_a_placed_order_carries_its_customer_and_total() -> None:
    order = given(Order, PLACED, id="o-1").when(lambda o: o.pay()).then(PAID)
    assert order.status == "paid"


def test_a_paid_order_is_neither_paid_again_nor_cancelled() -> None:
    paid = given(Order, PLACED, PAID, id="o-1")
    paid.when(lambda o: o.pay()).then_raises(OrderError, match="o-1 is paid; only a placed")
    paid.when(lambda o: o.cancel("changed my mind")).then_raises(OrderError, match="is paid")


def test_cancelling_a_placed_order() -> None:
    given(Order, PLACED).when(lambda o: o.cancel("out of stock")).then(
        OrderCancelled(reason="out of stock")
    )


def test_a_cancelled_order_cannot_be_paid() -> None:
    given(Order, PLACED, OrderCancelled(reason="x")).when(lambda o: o.pay()).then_raises(
        OrderError, match="is cancelled"
    )


# -- the summary view ----------------------------------------------------------------


def test_the_summary_has_a_row_per_order_with_its_status_and_times() -> None:
    clock = FakeClock(NOON)
    summary = given(
        OrderSummary,
        stream(Order, "o-1", PLACED),
        stream(Order, "o-2", OrderPlaced(customer_id="c-grace", total=Decimal("15"))),
        clock=clock,
    )
    clock.advance(minutes=3)
    summary.when(stream(Order, "o-1", PAID), stream(Order, "o-2", OrderCancelled(reason="x")))
    summary.then_rows(
        OrderSummary.orders,
        [
            {
                "order_id": "o-1",
                "customer_id": "c-ada",
                "total": Decimal("129.90"),
                "status": "paid",
                "placed_at": NOON,
                "closed_at": NOON + timedelta(minutes=3),
            },
            {"order_id": "o-2", "total": Decimal("15.00"), "status": "cancelled"},
        ],
    )


def test_an_open_order_has_no_closing_time() -> None:
    given(OrderSummary, stream(Order, "o-1", PLACED)).then_rows(
        OrderSummary.orders, [{"order_id": "o-1", "status": "placed", "closed_at": None}]
    )


# -- the unpaid-order deadline ---------------------------------------------------------


def test_placing_an_order_schedules_its_cancellation() -> None:
    given(
        CancelUnpaidOrders, stream(Order, "o-1", PLACED), context="orders", clock=FakeClock(NOON)
    ).then().then_scheduled(Scheduled(DEADLINE, "o-1", due_at=NOON + TIMEOUT))


def test_an_order_still_unpaid_when_its_deadline_falls_due_is_cancelled() -> None:
    scenario = given(
        CancelUnpaidOrders, stream(Order, "o-1", PLACED), context="orders", clock=FakeClock(NOON)
    )
    scenario.advance(TIMEOUT - timedelta(seconds=1)).then()
    scenario.advance(seconds=1).then(
        stream(Order, "o-1", OrderCancelled(reason=f"not paid within {TIMEOUT}"))
    ).then_scheduled()


@pytest.mark.parametrize(
    "settled", [PAID, OrderCancelled(reason="customer asked")], ids=["paid", "cancelled"]
)
def test_paying_or_cancelling_in_time_withdraws_the_deadline(
    settled: OrderPaid | OrderCancelled,
) -> None:
    scenario = given(
        CancelUnpaidOrders, stream(Order, "o-1", PLACED), context="orders", clock=FakeClock(NOON)
    )
    scenario.advance(minutes=10).when(stream(Order, "o-1", settled)).then_scheduled()
    scenario.advance(hours=1).then()


def test_each_order_has_its_own_deadline() -> None:
    clock = FakeClock(NOON)
    scenario = given(
        CancelUnpaidOrders, stream(Order, "o-1", PLACED), context="orders", clock=clock
    )
    clock.advance(minutes=5)
    scenario.when(stream(Order, "o-2", PLACED)).then_scheduled(
        Scheduled(DEADLINE, "o-1", due_at=NOON + TIMEOUT),
        Scheduled(DEADLINE, "o-2", due_at=NOON + timedelta(minutes=5) + TIMEOUT),
    )
    scenario.advance(minutes=12).then(
        stream(Order, "o-1", OrderCancelled(reason=f"not paid within {TIMEOUT}"))
    )
    scenario.then_scheduled(Scheduled(DEADLINE, "o-2", due_at=NOON + timedelta(minutes=20)))
