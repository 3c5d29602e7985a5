"""The payments context's published events."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from eventsource import Event


class AuthorizationAttempted(Event):
    card_number: str
    amount: Decimal
    approved: bool
    # When the card terminal made the attempt: windows use this business
    # time, not when the event was recorded or processed.
    attempted_at: datetime


class CardDeclined(Event):
    """A declined attempt, as `payments.card_alerts` carries it: keyed by card number."""

    card_number: str
    amount: Decimal
    # The payment that was declined: the key is now the card, not the payment.
    payment_id: str
    declined_at: datetime
