"""The payments context, tested with `eventsource.testing`: payments and the fraud window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from eventsource.store.engine import read_transaction
from eventsource.testing import ConsumerScenario, given, stream
from sample_app.payments.domain import Payment, PaymentError
from sample_app.payments.events import AuthorizationAttempted
from sample_app.payments.views import CardAttempts, flagged_cards_query

TEN = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
VISA = "4111111111111111"
AMEX = "340000000000009"


def attempted(card: str, minutes: float, *, approved: bool = False) -> AuthorizationAttempted:
    return AuthorizationAttempted(
        card_number=card,
        amount=Decimal("49.00"),
        approved=approved,
        attempted_at=TEN + timedelta(minutes=minutes),
    )


def test_an_attempt_records_the_terminals_time() -> None:
    payment = (
        given(Payment)
        .when(lambda p: p.attempt(VISA, Decimal("49.00"), TEN, approved=False))
        .then(attempted(VISA, 0))
    )
    assert (payment.attempts, payment.approved) == (1, False)


def test_a_declined_payment_may_be_tried_again_an_approved_one_not() -> None:
    given(Payment, attempted(VISA, 0)).when(
        lambda p: p.attempt(VISA, Decimal("49.00"), TEN, approved=True)
    ).then(attempted(VISA, 0, approved=True))
    given(Payment, attempted(VISA, 0, approved=True), id="pay-1").when(
        lambda p: p.attempt(VISA, Decimal("49.00"), TEN, approved=True)
    ).then_raises(PaymentError, match="pay-1 is already authorized")


def flagged(scenario: ConsumerScenario) -> set[str]:
    with read_transaction(scenario.engine) as conn:
        return set(conn.execute(flagged_cards_query()).scalars())  # type: ignore[call-overload]


def test_attempts_are_counted_per_card() -> None:
    scenario = given(
        CardAttempts,
        stream("payment", "pay-1", attempted(VISA, 0), attempted(VISA, 1, approved=True)),
        stream("payment", "pay-2", attempted(AMEX, 7)),
    )
    scenario.then_rows(
        CardAttempts.cards,
        [
            {
                "card_number": AMEX,
                "attempts": 1,
                "declined": 1,
                "last_attempt_at": TEN + timedelta(minutes=7),
            },
            {
                "card_number": VISA,
                "attempts": 2,
                "declined": 1,
                "last_attempt_at": TEN + timedelta(minutes=1),
            },
        ],
    )


def test_an_earlier_attempt_read_late_does_not_move_the_last_attempt_back() -> None:
    # A card's payments sit on different partitions of `payments.payment`,
    # so its attempts can be read out of time order.
    scenario = given(
        CardAttempts,
        stream("payment", "pay-2", attempted(VISA, 5)),
        stream("payment", "pay-1", attempted(VISA, 2)),
    )
    scenario.then_rows(
        CardAttempts.cards,
        [
            {
                "card_number": VISA,
                "attempts": 2,
                "declined": 2,
                "last_attempt_at": TEN + timedelta(minutes=5),
            }
        ],
    )


def test_more_than_three_attempts_in_one_five_minute_window_flag_a_card() -> None:
    four_in_a_window = [attempted(VISA, m) for m in (0.0, 1.0, 2.5, 4.9)]
    four_spread_out = [attempted(AMEX, m) for m in (0.1, 6.0, 11.0, 16.0)]
    scenario = given(
        CardAttempts,
        *[stream("payment", f"visa-{i}", e) for i, e in enumerate(four_in_a_window)],
        *[stream("payment", f"amex-{i}", e) for i, e in enumerate(four_spread_out)],
    )
    assert flagged(scenario) == {VISA}


def test_exactly_three_attempts_do_not_flag_a_card() -> None:
    scenario = given(
        CardAttempts, *[stream("payment", f"p-{m}", attempted(VISA, m)) for m in (0, 1, 2)]
    )
    assert flagged(scenario) == set()
    scenario.when(stream("payment", "p-3", attempted(VISA, 3)))
    assert flagged(scenario) == {VISA}
