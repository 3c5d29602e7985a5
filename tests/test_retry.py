"""The retry policy every long-running process uses for its database and broker calls."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from eventsource.errors import (
    BrokerUnavailable,
    ConcurrencyError,
    ConfigurationError,
    StoreError,
    StoreUnavailable,
)
from eventsource.retry import Outage, RetryPolicy, Stopped, is_transient


class Flaky:
    """Fails with `error` `failures` times, then answers 42."""

    def __init__(self, error: Exception, failures: int) -> None:
        self.error = error
        self.failures = failures
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return 42


def fast(**options: object) -> RetryPolicy:
    return RetryPolicy("test dependency", base=0.001, cap=0.01, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error",
    [
        StoreUnavailable("server closed the connection unexpectedly"),
        BrokerUnavailable("all brokers down"),
        ConcurrencyError("account:1", 3, 4),
    ],
)
def test_passing_failures_are_retried_until_the_call_succeeds(error: Exception) -> None:
    call = Flaky(error, failures=5)
    assert fast().call(call) == 42
    assert call.calls == 6


@pytest.mark.parametrize(
    "error",
    [
        StoreError('password authentication failed for user "eventsource"'),
        ConfigurationError("bad setting"),
        ValueError("a bug"),
    ],
)
def test_failures_for_good_are_raised_at_once(error: Exception) -> None:
    call = Flaky(error, failures=5)
    with pytest.raises(type(error)):
        fast().call(call)
    assert call.calls == 1


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="eventsource.retry")
    policy = fast()
    assert policy.call(Flaky(StoreUnavailable("connection refused"), failures=30)) == 42
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "connection refused; retrying until it comes back" in lines[0]
    assert "back after" in lines[1]
    assert policy.outage.describe() is None


def test_while_an_outage_lasts_it_says_since_when_and_why() -> None:
    outage = Outage("relay orders")
    outage.begin(StoreUnavailable("the database system is starting up"))
    described = outage.describe()
    assert described is not None
    assert described.startswith("retrying since 20")
    assert described.endswith("StoreUnavailable: the database system is starting up")
    outage.end()
    assert outage.describe() is None


def test_a_stop_ends_the_wait_at_once() -> None:
    stop = threading.Event()
    policy = RetryPolicy("test dependency", base=5.0, cap=5.0, stop=stop)
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(Stopped, match="stopped while retrying"):
        policy.call(Flaky(StoreUnavailable("down"), failures=1_000))
    assert time.monotonic() - started < 2.0


def test_a_deadline_gives_up_with_the_last_error() -> None:
    policy = fast(deadline=0.1)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match="all brokers down"):
        policy.call(Flaky(BrokerUnavailable("all brokers down"), failures=1_000_000))
    assert time.monotonic() - started < 1.0


def test_backoff_is_jittered_and_capped() -> None:
    policy = RetryPolicy("x", base=0.1, cap=2.0)
    delays = [policy.delay(attempt) for attempt in range(1, 12) for _ in range(20)]
    assert min(delays) >= 0.1
    assert max(delays) <= 2.0
    assert len({round(d, 6) for d in delays}) > 100  # not in lock step with other processes


def test_driver_errors_are_classified_by_kind() -> None:
    assert is_transient(StoreUnavailable("x"))
    assert not is_transient(StoreError("x"))
    assert not is_transient(RuntimeError("x"))
