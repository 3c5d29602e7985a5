"""Payments' read models: attempts per card, the fraud window, declines per card.

The seed's query, "card numbers with more than 3 authorization attempts in a
5-minute window", is `fraud_windows.keys_with_more_than(3)`: SQL over the view.
`DeclinedCards` reads the card alerts that the `card_alerts` transform writes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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


def _later(moment: datetime, than: datetime | None) -> bool:
    """Whether `moment` is at or after `than`: a card's events come from
    several partitions, so the latest read is not always the latest in time.
    (SQLite gives back naive UTC datetimes.)"""
    if than is None:
        return True
    return moment >= (than.replace(tzinfo=UTC) if than.tzinfo is None else than)


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
        last = card["last_attempt_at"] if card else None
        view.upsert(
            self.cards,
            card_number=event.card_number,
            attempts=(card["attempts"] if card else 0) + 1,
            declined=(card["declined"] if card else 0) + (0 if event.approved else 1),
            last_attempt_at=event.attempted_at if _later(event.attempted_at, last) else last,
        )
        fraud_windows.add(view, event.card_number, event.attempted_at)


class DeclinedCards(Projection):
    """Declines per card, folded from `payments.card_alerts` (the transform's output).

    The topic is keyed by card, so a card's alerts are one stream (one Kafka
    partition). Alerts from attempts on different `payments.payment`
    partitions may arrive out of time order, so "last" is the latest
    `declined_at`, not the latest alert read.
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
        last = card if card and not _later(event.declined_at, card["last_declined_at"]) else None
        view.upsert(
            self.declines,
            card_number=event.aggregate_id,
            declines=(card["declines"] if card else 0) + 1,
            last_payment_id=last["last_payment_id"] if last else event.payment_id,
            last_declined_at=last["last_declined_at"] if last else event.declined_at,
        )


def flagged_cards_query() -> object:
    """Cards with more than 3 attempts in one 5-minute window."""
    return fraud_windows.keys_with_more_than(FRAUD_THRESHOLD)
