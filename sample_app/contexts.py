"""The four bounded contexts and the projections and reactors each one runs.

Each context has its own database; this table is the only place that knows
all of them (the demo and the deployment, not the contexts themselves).
"""

from __future__ import annotations

CONTEXTS = ("customers", "orders", "shipping", "payments")

# What each context's worker process runs, in import-path form for the CLI.
CONSUMERS: dict[str, list[str]] = {
    "customers": [],
    "orders": [
        "sample_app.orders.views:OrderSummary",
        "sample_app.orders.timeouts:CancelUnpaidOrders",
    ],
    "shipping": [
        "sample_app.shipping.views:AddressBook",
        "sample_app.shipping.reactor:ShipPaidOrders",
        "sample_app.shipping.views:ShipmentsToDispatch",
    ],
    "payments": [
        "sample_app.payments.views:CardAttempts",
        "sample_app.payments.views:DeclinedCards",
    ],
}

# The transforms each context runs (`eventsource transform run`): their
# output topics are the context's own.
TRANSFORMS: dict[str, list[str]] = {"payments": ["sample_app.payments.alerts:card_alerts"]}
