"""Which errors go away by themselves, so that a batch is simply run again."""

from __future__ import annotations

from eventsource.errors import BrokerUnavailable, ConcurrencyError, StoreUnavailable
from eventsource.store.translate import translate

# Another writer of a reactor's aggregates; a database or broker that is
# down, restarting or chose the batch as a deadlock's victim.
TRANSIENT = (ConcurrencyError, StoreUnavailable, BrokerUnavailable)


def transient(exc: BaseException) -> bool:
    """Whether an error goes away by itself (so the work is simply run again)."""
    if isinstance(exc, TRANSIENT):
        return True
    return isinstance(translate(exc), StoreUnavailable)
