"""What the dashboard remembers between samples: lag over time and throughput.

Bounded and in memory only: `size` samples per consumer (a restart of the
dashboard starts over). Throughput is counted from the `applied` counter of
each worker's heartbeat row: that counter restarts with the worker, so the
history follows each worker (by name and start time) and adds up what each
one applied between two samples.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from eventsource.projections.members import Member

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # the one "worker" of a total


@dataclass(frozen=True)
class Point:
    at: float  # Unix time of the sample
    lag: int | None  # events behind (offsets when the stores are not at hand); None: unknown
    applied: int  # events applied by the workers, summed since the dashboard started


@dataclass
class _Track:
    points: deque[Point]
    workers: dict[tuple[str, datetime], int] = field(default_factory=dict)
    applied: int = 0


class History:
    """The last `size` samples of each consumer; throughput over `window` seconds."""

    def __init__(self, *, size: int = 450, window: float = 30.0) -> None:
        if size < 2:
            raise ValueError("a history needs room for two samples")
        self.size = size
        self.window = window
        self._tracks: dict[str, _Track] = {}

    def add(self, name: str, at: float, lag: int | None, members: Iterable[Member]) -> None:
        """Record a sample of `name`: its lag and its workers' heartbeat rows."""
        first = name not in self._tracks
        track = self._track(name)
        now = {(m.name, m.started_at): m.applied for m in members}
        for key, applied in now.items():
            before = track.workers.get(key)
            if before is not None:
                track.applied += max(0, applied - before)
            elif not first:
                track.applied += applied  # a worker that started since the last sample
        track.workers = now
        track.points.append(Point(at, lag, track.applied))

    def add_total(self, name: str, at: float, lag: int | None, total: int) -> None:
        """Record a sample of `name` whose progress is one growing `total`
        (a transform on Kafka: its committed offsets added up)."""
        track = self._track(name)
        before = track.workers.get(("", _EPOCH))
        if before is not None:
            track.applied += max(0, total - before)  # offsets deleted or reset: no negative step
        track.workers = {("", _EPOCH): total}
        track.points.append(Point(at, lag, track.applied))

    def _track(self, name: str) -> _Track:
        track = self._tracks.get(name)
        if track is None:
            track = self._tracks[name] = _Track(deque(maxlen=self.size))
        return track

    def lags(self, name: str) -> list[tuple[float, int | None]]:
        """(time, lag) of every sample kept, oldest first."""
        track = self._tracks.get(name)
        return [(p.at, p.lag) for p in track.points] if track else []

    def throughput(self, name: str) -> float | None:
        """Events applied per second over the last `window` seconds (None before two samples).

        Workers report their count with each heartbeat, so a window a few
        heartbeats long smooths the steps.
        """
        track = self._tracks.get(name)
        if track is None or len(track.points) < 2:
            return None
        last = track.points[-1]
        start = next(p for p in track.points if p.at >= last.at - self.window)
        if start is last:
            start = track.points[-2]
        return (last.applied - start.applied) / (last.at - start.at) if last.at > start.at else None
