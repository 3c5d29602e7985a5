"""`FakeClock`: the time a scenario's events happen at, moved by the test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

DEFAULT_START = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


class FakeClock:
    """A clock that stands still until the test moves it.

    ::

        clock = FakeClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
        clock.advance(minutes=15)
        assert clock.now() == datetime(2026, 3, 1, 12, 15, tzinfo=UTC)

    Scenarios stamp the events they are given with `now()` as their
    `occurred_at`, and fire a reactor's deadlines that are due at `now()`
    when the clock is advanced. Events that the code under test triggers
    itself carry the real time.
    """

    def __init__(self, start: datetime = DEFAULT_START) -> None:
        self._now = _aware(start)

    def __repr__(self) -> str:
        return f"FakeClock({self._now.isoformat()})"

    def now(self) -> datetime:
        """The clock's current time, in UTC."""
        return self._now

    def advance(
        self,
        delta: timedelta | None = None,
        *,
        days: float = 0,
        hours: float = 0,
        minutes: float = 0,
        seconds: float = 0,
    ) -> datetime:
        """Move the clock forward by `delta` or by the parts given; return the new time."""
        step = (delta or timedelta()) + timedelta(
            days=days, hours=hours, minutes=minutes, seconds=seconds
        )
        if step < timedelta():
            raise ValueError(f"a clock only moves forward, not by {step}")
        self._now += step
        return self._now

    def set(self, moment: datetime) -> None:
        """Move the clock to `moment`, which must not be before its current time."""
        moment = _aware(moment)
        if moment < self._now:
            raise ValueError(f"a clock only moves forward: {moment} is before {self._now}")
        self._now = moment


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"a clock's time must be time-zone aware, got {moment!r}")
    # In UTC, as the framework stamps events: SQLite compares times as text.
    return moment.astimezone(UTC)
