"""Payments' transform: declined attempts become card alerts, keyed by card.

`payments.payment` is keyed by payment: one card's attempts are spread over
the topic's partitions. The transform re-publishes each declined attempt on
`payments.card_alerts`, keyed by its card number, so that everything known
of one card is in one partition, in order. It keeps no state: per-card
counts are `DeclinedCards`' job, a projection of the output topic.

Run it with `eventsource transform run sample_app.payments.alerts:card_alerts`:
on Kafka, exactly once (one transaction per batch); on the embedded log, its
output goes to the payments store as events of aggregate type `card_alerts`.
"""

from __future__ import annotations

from eventsource import stream
from sample_app.payments.events import AuthorizationAttempted, CardDeclined


def card_declined(attempt: AuthorizationAttempted) -> CardDeclined:
    return CardDeclined(
        card_number=attempt.card_number,
        amount=attempt.amount,
        payment_id=attempt.aggregate_id,
        declined_at=attempt.attempted_at,
    )


def card_of(alert: CardDeclined) -> str:
    return alert.card_number


declined = stream("payments.payment", AuthorizationAttempted).filter(lambda a: not a.approved)
card_alerts = declined.map(card_declined).key_by(card_of).to("payments.card_alerts")
