"""Database errors translated at the engine's boundary into two kinds.

The runtime decides what to do on kinds, never on driver classes: a
`StoreUnavailable` (the server is down or restarting, the connection was
lost, too many connections, a deadlock or serialization failure, a locked
SQLite file) is retried; a `StoreError` (a refused login, a database or
folder that does not exist, a missing table) stops with a one-line reason.

Constraint violations and bad data (`IntegrityError`, `DataError`,
`ProgrammingError`) are left to the code that wrote the statement: an
append's conflict is a `ConcurrencyError`, a view's refused row is its
event's failure.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from eventsource.errors import StoreError, StoreUnavailable

# SQLSTATE classes and codes a retry cures: connection exceptions, shutdown
# and start-up, too many connections, deadlocks and serialization failures,
# a lock not available, a read-only standby mid-failover.
_TRANSIENT_CLASSES = ("08", "53", "57P", "40")
_TRANSIENT_CODES = frozenset({"55P03", "25006", "58000", "58030"})
# Said by a server that refuses us for good while connecting (no SQLSTATE then).
_REFUSALS = (
    "password authentication failed",
    "authentication failed",
    "does not exist",
    "no pg_hba.conf entry",
    "permission denied",
    "is not permitted to log in",
    "ssl is not enabled",
    "unable to open database file",
    "no such table",
    "no such column",
    "syntax error",
    "readonly database",
    "file is not a database",
)
_SQLITE_PASSING = ("locked", "busy")


def translate(exc: BaseException) -> StoreError | None:
    """Our kind of `exc` (a driver or SQLAlchemy error), or None to leave it be."""
    if isinstance(exc, StoreError):
        return exc
    original: Any = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(exc, DBAPIError) and not isinstance(exc, OperationalError | InterfaceError):
        if not exc.connection_invalidated:
            return None
    elif not isinstance(exc, OperationalError | InterfaceError) and not _driver_operational(
        original
    ):
        return None
    text = _first_line(original)
    if isinstance(original, sqlite3.Error):
        passing = any(word in text.lower() for word in _SQLITE_PASSING)
        return StoreUnavailable(text) if passing else StoreError(text)
    if _transient(original, text):
        return StoreUnavailable(text)
    return StoreError(text)


def install(engine: Engine) -> None:
    """Raise our kinds instead of SQLAlchemy's for the errors `translate` knows."""

    where = engine.url.render_as_string(hide_password=True)

    @event.listens_for(engine, "handle_error")
    def _translate(context: ExceptionContext) -> BaseException | None:
        return located(
            where,
            context.original_exception,
            context.sqlalchemy_exception,
            is_disconnect=context.is_disconnect,
        )


def located(
    where: str,
    original: BaseException,
    wrapped: BaseException | None,
    *,
    is_disconnect: bool,
) -> StoreError | None:
    """Our kind of a failed statement's error, naming the database, or None.

    What the engine's hook raises; statements run on the driver's own
    connection (`store/driver.py`) raise the same.
    """
    if is_disconnect:
        error: StoreError | None = StoreUnavailable(_first_line(original))
    else:
        error = translate(wrapped or original)
    if error is None:
        return None
    result = type(error)(f"{where}: {error}{_hint(str(error))}")
    result.__cause__ = wrapped or original
    return result


_HINTS = (
    ("unable to open database file", "does its folder exist?"),
    ("password authentication failed", "check the user and password in the URL"),
    ("does not exist", "create it, or check the URL"),
    ("connection refused", "is the server running, on that host and port?"),
    ("no such table", "run `eventsource db upgrade` on this database?"),
)


def _hint(text: str) -> str:
    lowered = text.lower()
    for words, hint in _HINTS:
        if words in lowered:
            return f" ({hint})"
    return ""


def _transient(original: Any, text: str) -> bool:
    state = getattr(original, "sqlstate", None)
    if state:
        return state.startswith(_TRANSIENT_CLASSES) or state in _TRANSIENT_CODES
    lowered = text.lower()
    return not any(refusal in lowered for refusal in _REFUSALS)


def _driver_operational(original: Any) -> bool:
    """A raw driver error that SQLAlchemy did not wrap (a hook's own statement)."""
    if isinstance(original, sqlite3.OperationalError):
        return True
    if not type(original).__module__.startswith("psycopg"):
        return False
    import psycopg

    return isinstance(original, psycopg.OperationalError | psycopg.InterfaceError)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    # psycopg repeats the failure once per address tried: the first says it.
    text = text.removeprefix("connection failed: ")
    return text.splitlines()[0].strip() if text else type(exc).__name__
