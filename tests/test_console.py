"""What long commands print while they work, when stderr is not a terminal."""

from __future__ import annotations

import pytest

from eventsource import console
from eventsource.console import ProgressReport


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(console.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(console, "is_terminal", lambda: False)
    return now


def test_a_progress_line_gives_the_rate_the_lag_and_the_time_left(
    clock: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    with ProgressReport("rebuild totals", total=3000) as report:
        clock[0] += 10
        report.update(1000, lag=2000)  # 100/s, 2,000 to go: 20 s left
        clock[0] += 10
        report.update(3000, lag=0)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].endswith("rebuild totals: 1,000/3,000 events (100/s, lag 2,000, 20 s left)")
    assert lines[-1].endswith("rebuild totals: done: 3,000/3,000 events (150/s, lag 0)")


def test_a_report_interrupted_by_an_error_does_not_say_done(
    clock: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    def relay() -> None:
        with ProgressReport("relay orders") as report:
            clock[0] += 1
            report.update(500)
            raise RuntimeError("the database went away")

    with pytest.raises(RuntimeError):
        relay()
    err = capsys.readouterr().err
    assert "done:" not in err
    assert "relay orders: stopped after 500 events" in err


def test_a_report_that_failed_before_any_progress_prints_nothing_final(
    clock: list[float], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(RuntimeError), ProgressReport("projection x"):
        raise RuntimeError("configuration error")
    assert capsys.readouterr().err == ""
