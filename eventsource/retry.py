"""One retry policy for every database and broker call of a long-running process.

A passing failure (`StoreUnavailable`, `BrokerUnavailable`, a reactor's
`ConcurrencyError`) is retried with exponential backoff, jittered and
capped; anything else is raised at once. An outage is logged twice, when it
starts and when it ends (with its length), never once per attempt, and is
visible while it lasts (`since`, `reason`) so that status and health
reports can tell a stalled process from a dead one.

::

    policy = RetryPolicy("relay orders", stop=stop_event)
    head = policy.call(store.head_position)

A stop event that is set while the policy waits ends the wait at once with
`Stopped`; a `deadline` (one-shot commands) ends it with the last error.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from eventsource.errors import (
    BrokerUnavailable,
    ConcurrencyError,
    EventSourceError,
    StoreUnavailable,
)
from eventsource.store.translate import translate

log = logging.getLogger(__name__)

T = TypeVar("T")


class Stopped(EventSourceError):
    """The process was asked to stop while it waited for a dependency to come back."""


def is_transient(exc: BaseException) -> bool:
    """Whether waiting and trying again can cure `exc`."""
    if isinstance(exc, StoreUnavailable | BrokerUnavailable | ConcurrencyError):
        return True
    return isinstance(translate(exc), StoreUnavailable)


class Outage:
    """The state of one dependency: fine, or failing since a time for a reason.

    Logs one line when an outage starts and one when it ends; `begin` again
    during an outage only updates the reason.
    """

    def __init__(self, what: str, logger: logging.Logger | None = None) -> None:
        self.what = what
        self.log = logger or log
        self.since: datetime | None = None
        self.reason: str | None = None
        self._started = 0.0
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self.since is not None

    def begin(self, error: BaseException) -> None:
        reason = _reason(error)
        with self._lock:
            first = self.since is None
            if first:
                self.since = datetime.now(UTC)
                self._started = time.monotonic()
            self.reason = reason
        if first:
            self.log.warning("%s: %s; retrying until it comes back", self.what, reason)

    def end(self) -> None:
        with self._lock:
            if self.since is None:
                return
            lasted = time.monotonic() - self._started
            self.since = None
            self.reason = None
        self.log.warning("%s: back after %.1f s", self.what, lasted)

    def describe(self) -> str | None:
        """`retrying since <time>: <reason>`, or None when all is well."""
        since, reason = self.since, self.reason
        if since is None:
            return None
        return f"retrying since {since.isoformat(timespec='seconds')}: {reason}"


class RetryPolicy:
    """Retries passing failures with jittered, capped exponential backoff."""

    def __init__(
        self,
        what: str,
        *,
        stop: threading.Event | None = None,
        base: float = 0.2,
        cap: float = 10.0,
        deadline: float | None = None,
        outage: Outage | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.stop = stop or threading.Event()
        self.base = base
        self.cap = cap
        self.deadline = deadline
        self.outage = outage or Outage(what, logger)
        self._first_failure: float | None = None

    def call(self, fn: Callable[[], T]) -> T:
        """`fn()`, again after each passing failure until it succeeds.

        Raises `Stopped` if the stop event is set while waiting, and the
        last error once `deadline` seconds have passed since the first one.
        """
        attempt = 0
        while True:
            try:
                result = fn()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                attempt += 1
                self.failed(exc, attempt)
                continue
            self.recovered()
            return result

    def failed(self, exc: Exception, attempt: int) -> None:
        """Attempt `attempt` failed with the passing `exc`: note the outage,
        give up (re-raise `exc`) past the deadline, else wait for the next one.

        For loops that retry by themselves; `call` uses it too.
        """
        now = time.monotonic()
        if attempt == 1 or self._first_failure is None:
            self._first_failure = now
        self.outage.begin(exc)
        if self.deadline is not None and now - self._first_failure >= self.deadline:
            raise exc
        self.wait(attempt)

    def recovered(self) -> None:
        """The dependency answered again."""
        self._first_failure = None
        self.outage.end()

    def wait(self, attempt: int) -> None:
        """Sleep before attempt `attempt + 1`; raise `Stopped` if asked to stop."""
        if self.stop.wait(self.delay(attempt)):
            raise Stopped(f"{self.outage.what}: stopped while retrying ({self.outage.reason})")

    def delay(self, attempt: int) -> float:
        """Full jitter: uniform in [base, min(cap, base * 2**(attempt-1))]."""
        ceiling = min(self.cap, self.base * 2 ** (attempt - 1))
        return random.uniform(min(self.base, ceiling), ceiling)


def loggable(error: BaseException | str) -> str:
    """An error's first line: what failed, without the statement, its
    parameters or the database's DETAIL (which quotes the failing row)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
