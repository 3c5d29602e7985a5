"""Lag over time and throughput, from successive samples of the workers' heartbeat rows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from eventsource.dashboard import History
from eventsource.projections.members import Member

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def worker(name: str, applied: int, started: int = 0) -> Member:
    started_at = T0.replace(second=started)
    return Member(name, "host", 1, started_at, started_at, [], applied, None, None)


def test_throughput_is_events_applied_per_second_by_all_workers() -> None:
    history = History(window=60)
    history.add("p", 0.0, 100, [worker("a", 1000), worker("b", 50)])
    history.add("p", 10.0, 80, [worker("a", 1300), worker("b", 150)])
    assert history.throughput("p") == pytest.approx(40.0)  # (300 + 100) / 10 s
    assert history.lags("p") == [(0.0, 100), (10.0, 80)]


def test_no_throughput_before_two_samples() -> None:
    history = History()
    assert history.throughput("p") is None
    history.add("p", 0.0, 5, [worker("a", 10)])
    assert history.throughput("p") is None


def test_a_restarted_worker_counts_from_zero_again_never_backwards() -> None:
    history = History(window=60)
    history.add("p", 0.0, 0, [worker("a", 5000)])
    # The worker was restarted: same name, a new start time, its counter from zero.
    history.add("p", 10.0, 0, [worker("a", 200, started=5)])
    assert history.throughput("p") == pytest.approx(20.0)
    # A counter that went down under the same identity adds nothing.
    history.add("p", 20.0, 0, [worker("a", 100, started=5)])
    assert history.throughput("p") == pytest.approx(10.0)  # 200 over 20 s


def test_workers_present_at_the_first_sample_only_count_what_follows() -> None:
    history = History(window=60)
    history.add("p", 0.0, 0, [worker("a", 1_000_000)])  # its past is not throughput
    history.add("p", 1.0, 0, [worker("a", 1_000_000)])
    assert history.throughput("p") == 0.0


def test_throughput_covers_the_window_only() -> None:
    history = History(window=10)
    history.add("p", 0.0, 0, [worker("a", 0)])
    history.add("p", 100.0, 0, [worker("a", 10_000)])  # a burst long ago
    history.add("p", 105.0, 0, [worker("a", 10_000)])
    history.add("p", 110.0, 0, [worker("a", 10_050)])
    assert history.throughput("p") == pytest.approx(5.0)  # 50 over the last 10 s


def test_history_is_bounded() -> None:
    history = History(size=3)
    for n in range(10):
        history.add("p", float(n), n, [])
    assert history.lags("p") == [(7.0, 7), (8.0, 8), (9.0, 9)]


def test_a_growing_total_gives_throughput_and_never_a_negative_step() -> None:
    history = History(window=60)
    history.add_total("t", 0.0, 500, 1000)  # what was committed before counts for nothing
    history.add_total("t", 10.0, 300, 1200)
    assert history.throughput("t") == pytest.approx(20.0)
    history.add_total("t", 20.0, 900, 0)  # the group's offsets deleted: starts over
    history.add_total("t", 30.0, 800, 100)
    assert history.throughput("t") == pytest.approx(300 / 30)
    assert [lag for _, lag in history.lags("t")] == [500, 300, 900, 800]
