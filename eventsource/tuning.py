"""Interpreter settings for a process that only runs eventsource workers.

Library code never changes process-wide interpreter state: an application
that runs a `Worker` in its own process keeps its own garbage collector and
GIL switch interval. The `eventsource` command owns its process, and may
tune both when asked (`EVENTSOURCE_TUNE_INTERPRETER=true`):

* the cyclic garbage collector is held off and run after every
  `collect_every`-th batch instead: a batch allocates tens of thousands of
  acyclic records, and a collection during the batch walks all of them;
  what start-up loaded is frozen out of every collection;
* the GIL switch interval drops to 1 ms, so that a worker committing on its
  pipeline thread gets the GIL back promptly after each statement (a
  projection into PostgreSQL commits behind only under such an interval).

`benchmarks/README.md` gives the measured effect.
"""

from __future__ import annotations

import gc
import sys
import threading
from types import TracebackType

SWITCH_INTERVAL = 0.001
COLLECT_EVERY = 16


class InterpreterTuning:
    """Holds the tuning for a `with` block; `batch_done` counts batches."""

    def __init__(
        self, *, collect_every: int = COLLECT_EVERY, switch_interval: float = SWITCH_INTERVAL
    ) -> None:
        self.collect_every = collect_every
        self.switch_interval = switch_interval
        self._lock = threading.Lock()
        self._batches = 0
        self._saved_interval = 0.0
        self._was_enabled = True

    def __enter__(self) -> InterpreterTuning:
        self._was_enabled = gc.isenabled()
        gc.collect()
        gc.freeze()
        gc.disable()
        self._saved_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._saved_interval, self.switch_interval))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        sys.setswitchinterval(self._saved_interval)
        gc.unfreeze()
        if self._was_enabled:
            gc.enable()
        gc.collect()

    def batch_done(self) -> None:
        """A batch ended (any worker's): collect after every `collect_every`-th."""
        with self._lock:
            self._batches += 1
            due = self._batches >= self.collect_every
            if due:
                self._batches = 0
        if due:
            gc.collect()
