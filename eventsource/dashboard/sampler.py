"""The thread that reads everything every few seconds and keeps the last reading.

It alone touches the `Sources` (their engines, log consumers, Kafka
clients); web requests only take the last snapshot, already serialised, so
however many pages poll, the databases see one reader at the sampling pace.
A section that fails (a database that went away, Kafka down) shows its
error on the page, with secrets blanked out, and the next sample tries again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson

from eventsource.dashboard import gather
from eventsource.dashboard.history import History
from eventsource.dashboard.sources import Sources, Watched, WatchedTransform

log = logging.getLogger(__name__)

T = TypeVar("T")


class Sampler:
    """Samples `sources` every `interval` seconds on its own thread.

    `history` seconds of lag are kept per consumer; `tail` recent events,
    and per consumer its `dead_letters` newest dead letters and its
    `deadlines` soonest pending deadlines (with their count) are shown;
    `payloads` adds the events' payloads to the events and dead letters.
    """

    def __init__(
        self,
        sources: Sources,
        *,
        interval: float = 2.0,
        history: float = 900.0,
        tail: int = 50,
        dead_letters: int = 20,
        deadlines: int = 10,
        payloads: bool = False,
    ) -> None:
        if interval <= 0:
            raise ValueError("the sampling interval must be positive")
        self.sources = sources
        self.interval = interval
        self.tail = tail
        self.dead_letters = dead_letters
        self.deadlines = deadlines
        self.payloads = payloads
        window = max(30.0, 3 * sources.settings.heartbeat_seconds, 2 * interval)
        self.history = History(size=max(2, int(history / interval)), window=window)
        self._secrets = sources.secrets()
        self._latest = orjson.dumps({"sampled_at": None, "interval": interval})
        self._latest_at: float | None = None  # time.monotonic() of the last sample
        self._lock = threading.Lock()
        self._sampling = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.samples = 0

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dashboard-sampler", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop sampling (after the current sample) and close the sources."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.sources.close()

    def latest(self) -> tuple[bytes, float | None]:
        """The last snapshot as JSON, and its age in seconds (None before the first)."""
        with self._lock:
            age = None if self._latest_at is None else time.monotonic() - self._latest_at
            return self._latest, age

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.sample()
            except Exception:
                # Sections catch what reading raises; this is a bug of the
                # dashboard's own. The page shows the snapshot growing old.
                log.exception("dashboard: sampling failed")
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def sample(self) -> dict[str, Any]:
        """Read everything once, remember it, and make it the latest snapshot.

        The sampler's thread calls it; a call from elsewhere waits its turn,
        as the sources (log consumers above all) serve one reader at a time.
        """
        with self._sampling:
            return self._sample()

    def _sample(self) -> dict[str, Any]:
        at = time.time()
        snapshot: dict[str, Any] = {
            "sampled_at": datetime.fromtimestamp(at, UTC),
            "interval": self.interval,
            "mode": self._mode(),
            "contexts": [self._context(c, url) for c, url in self.sources.describe().items()],
            "consumers": [self._consumer(w, at) for w in self.sources.watched],
            "error": None,
        }
        snapshot["events"] = self._section(
            "recent events",
            lambda: gather.recent_events(self.sources, limit=self.tail, payloads=self.payloads),
            out=snapshot,
            default=[],
        )
        rendered = orjson.dumps(snapshot, option=orjson.OPT_NAIVE_UTC)
        with self._lock:
            self._latest = rendered
            self._latest_at = time.monotonic()
        self.samples += 1
        return snapshot

    def _mode(self) -> str:
        if self.sources.embedded:
            return "embedded log"
        return f"Kafka {self.sources.settings.kafka_bootstrap_servers}"

    def _context(self, context: str, database: str) -> dict[str, Any]:
        store = self.sources.stores[context]
        out: dict[str, Any] = {"name": context, "database": database, "error": None}
        out["head"] = self._section(f"head of {context}", store.head_position, out=out)
        out["relay"] = self._section(
            f"relay of {context}", lambda: gather.relay(self.sources, context), out=out
        )
        return out

    def _consumer(self, w: Watched | WatchedTransform, at: float) -> dict[str, Any]:
        out: dict[str, Any] = {"name": w.name, "kind": w.kind, "context": w.context, "error": None}
        if isinstance(w, WatchedTransform):
            out["output"] = w.transform.output
            if not self.sources.embedded:
                return self._kafka_transform(w, at, out)
            # On the embedded log a transform is a reactor: its status is the reactor's.
            return self._watched(w.reactor(), at, out) | {"kind": w.kind, "deadlines": None}
        return self._watched(w, at, out)

    def _kafka_transform(
        self, w: WatchedTransform, at: float, out: dict[str, Any]
    ) -> dict[str, Any]:
        """A transform on Kafka: `transform status`; its dead letters are a topic's records."""
        found = self._section(
            w.name, lambda: gather.kafka_transform_status(self.sources, w), out=out
        )
        if found is not None:
            out.update(gather.kafka_transform_dict(found))
            self.history.add_total(w.name, at, found.lag, found.committed_total)
        out["lag_history"] = self.history.lags(w.name)
        out["throughput"] = self.history.throughput(w.name)
        out["throughput_unit"] = "offsets / s"
        parks = w.transform.on_failure == "park"
        out["dead_letter_topic"] = w.transform.dead_letters if parks else None
        out["dead_letters"] = []
        out["deadlines"] = None
        return out

    def _watched(self, w: Watched, at: float, out: dict[str, Any]) -> dict[str, Any]:
        found = self._section(w.name, lambda: gather.consumer_status(self.sources, w), out=out)
        if found is not None:
            out.update(gather.status_dict(found))
            lag = found.lag_events if found.lag_events is not None else found.lag
            self.history.add(w.name, at, lag, found.members)
        out["lag_history"] = self.history.lags(w.name)
        out["throughput"] = self.history.throughput(w.name)
        store = self.sources.stores[w.context]
        out["dead_letters"] = self._section(
            f"dead letters of {w.name}",
            lambda: gather.dead_letters(
                store, w.name, limit=self.dead_letters, payloads=self.payloads
            ),
            out=out,
            default=[],
        )
        out["deadlines"] = (
            self._section(
                f"deadlines of {w.name}",
                lambda: gather.pending_deadlines(store, w.name, limit=self.deadlines),
                out=out,
            )
            if w.kind == "reactor"
            else None
        )
        return out

    def _section(
        self, what: str, read: Callable[[], T], *, out: dict[str, Any], default: T | None = None
    ) -> T | None:
        """`read()`, or `default` with the error noted in `out` (and logged)."""
        try:
            return read()
        except Exception as exc:
            text = self._blank(f"{what}: {type(exc).__name__}: {' '.join(str(exc).split())}")
            log.warning("dashboard: %s", text)
            if out.get("error") is None:
                out["error"] = text
            return default

    def _blank(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text
