"""The `Payment` aggregate: the authorization attempts of one payment."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from eventsource import Aggregate, on
from sample_app.payments.events import AuthorizationAttempted


class PaymentError(Exception):
    """A command the payment's current state does not allow."""


class Payment(Aggregate):
    attempts: int = 0
    approved: bool = False

    def attempt(self, card_number: str, amount: Decimal, at: datetime, *, approved: bool) -> None:
        if self.approved:
            raise PaymentError(f"payment {self.id} is already authorized")
        self.trigger(
            AuthorizationAttempted(
                card_number=card_number, amount=amount, approved=approved, attempted_at=at
            )
        )

    @on(AuthorizationAttempted)
    def _attempted(self, event: AuthorizationAttempted) -> None:
        self.attempts += 1
        self.approved = event.approved
