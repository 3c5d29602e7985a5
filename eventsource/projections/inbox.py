"""Work handed to a worker's own thread by other threads.

A worker's view, connections and positions belong to the thread that runs
it. A scheduler (deadlines falling due) or an operator's call from another
thread never touches them: it puts a job in the worker's inbox, and the
worker runs it between two batches, on its own thread.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

log = logging.getLogger(__name__)


class Inbox:
    """A queue of jobs that the owner thread drains between batches.

    `submit` returns None while the inbox is closed (the worker is not
    running): the caller may then run the job itself, as the owner.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: deque[tuple[Callable[[], Any], Future[Any], str | None]] = deque()
        self._pending_keys: dict[str, Future[Any]] = {}
        self._open = False
        self.wake = threading.Event()  # set when a job arrives

    def open(self) -> None:
        with self._lock:
            self._open = True

    def close(self) -> None:
        """Refuse new jobs; the owner drains what is left first."""
        with self._lock:
            self._open = False

    def submit(self, job: Callable[[], Any], *, key: str | None = None) -> Future[Any] | None:
        """Queue `job` for the owner. With `key`, a job of that key still
        waiting is not queued twice: its future is returned instead."""
        with self._lock:
            if not self._open:
                return None
            if key is not None and key in self._pending_keys:
                return self._pending_keys[key]
            future: Future[Any] = Future()
            self._jobs.append((job, future, key))
            if key is not None:
                self._pending_keys[key] = future
        self.wake.set()
        return future

    def drain(self) -> None:
        """Run every queued job on this (the owner's) thread."""
        while True:
            with self._lock:
                if not self._jobs:
                    self.wake.clear()
                    return
                job, future, key = self._jobs.popleft()
                if key is not None:
                    self._pending_keys.pop(key, None)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = job()
            except BaseException as exc:
                future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                future.set_result(result)
