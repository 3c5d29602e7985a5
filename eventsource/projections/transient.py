"""Which errors go away by themselves, so that a batch is simply run again."""

from __future__ import annotations

from sqlalchemy.exc import InterfaceError, OperationalError

from eventsource.errors import ConcurrencyError

# Another writer of a reactor's aggregates, a deadlock, a lost connection,
# a locked SQLite file.
TRANSIENT = (ConcurrencyError, OperationalError, InterfaceError)


def transient(exc: BaseException) -> bool:
    """Whether an error goes away by itself (so the batch is simply run again).

    SQLite reports its deterministic errors ("no such table", a syntax error)
    as OperationalError too; of those only a locked or busy database passes.
    """
    if isinstance(exc, OperationalError):
        orig = getattr(exc, "orig", None)
        if type(orig).__module__ == "sqlite3":
            text = str(orig).lower()
            return "locked" in text or "busy" in text
    return isinstance(exc, TRANSIENT)
