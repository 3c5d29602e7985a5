"""Payments' read models: attempts per card, the fraud window, declines per card.

The seed's query, "card numbers with more than 3 authorization attempts in a
5-minute window", is `fraud_windows.keys_with_more_than(3)`: SQL over the view.
`DeclinedCards` reads the card alerts that the `card_alerts` transform writes.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import BigInteger, Column, DateTime, MetaData, String, Table

from eventsource import Projection, TumblingWindow, View, handles
from sample_app.payments.events import AuthorizationAttempted, CardDeclined

metadata = MetaData()

fraud_windows = TumblingWindow(
    "payments_card_windows",
    metadata,
    key=Column("card_number", String(32)),
    size=timedelta(minutes=5),
)
FRAUD_THRESHOLD = 3


class CardAttempts(Projection):
    name = "payments.card_attempts"
    topics = ["payments.payment"]

    cards = Table(
        "payments_card_attempts",
        metadata,
        Column("card_number", String(32), primary_key=True),
        Column("attempts", BigInteger, nullable=False),
        Column("declined", BigInteger, nullable=False),
        Column("last_attempt_at", DateTime(timezone=True), nullable=False),
    )
    windows = fraud_windows.table

    @handles(AuthorizationAttempted)
    def _attempted(self, event: AuthorizationAttempted, view: View) -> None:
        card = view.get(self.cards, event.card_number)
        view.upsert(
            self.cards,
            card_number=event.card_number,
            attempts=(card["attempts"] if card else 0) + 1,
            declined=(card["declined"] if card else 0) + (0 if event.approved else 1),
            last_attempt_at=event.attempted_at,
        )
        fraud_windows.add(view, event.card_number, event.attempted_at)


class DeclinedCards(Projection):
    """Declines per card, folded from `payments.card_alerts` (the transform's output).

    The topic is keyed by card: a card's alerts come in order, one stream
    (and one Kafka partition) per card, so "last" means the latest decline.
    """

    name = "payments.declined_cards"
    topics = ["payments.card_alerts"]

    declines = Table(
        "payments_declined_cards",
        metadata,
        Column("card_number", String(32), primary_key=True),
        Column("declines", BigInteger, nullable=False),
        Column("last_payment_id", String(100), nullable=False),
        Column("last_declined_at", DateTime(timezone=True), nullable=False),
    )

    @handles(CardDeclined)
    def _declined(self, event: CardDeclined, view: View) -> None:
        card = view.get(self.declines, event.aggregate_id)
        view.upsert(
            self.declines,
            card_number=event.aggregate_id,
            declines=(card["declines"] if card else 0) + 1,
            last_payment_id=event.payment_id,
            last_declined_at=event.declined_at,
        )


def flagged_cards_query() -> object:
    """Cards with more than 3 attempts in one 5-minute window."""
    return fraud_windows.keys_with_more_than(FRAUD_THRESHOLD)
