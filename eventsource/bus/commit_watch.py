"""Noticing commits to a SQLite store, by any connection of any process.

SQLite's `PRAGMA data_version` changes whenever another connection has
committed: a few microseconds on a connection of our own, where reading the
log to find out costs a query. The embedded log and the relay ask it every
few milliseconds instead of reading the store every 50 or 100.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from eventsource.store.eventstore import EventStore

CHECK_EVERY = 0.005  # how often a watched store is asked for a new commit


class CommitWatch:
    """Tells whether a SQLite file has had a commit since a version noted."""

    def __init__(self, path: str) -> None:
        # Read-only: watching must never create or change the file.
        uri = f"{Path(path).absolute().as_uri()}?mode=ro"
        self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)

    @classmethod
    def of(cls, store: EventStore) -> CommitWatch | None:
        """A watch on `store`'s database, or None if it is not a SQLite file."""
        url = store.engine.url
        path = url.database
        if url.get_backend_name() != "sqlite" or not path or path == ":memory:":
            return None
        if path.startswith("file:"):
            return None  # a URI filename: its options are the engine's business
        try:
            return cls(path)
        except sqlite3.Error:
            return None  # not there yet: the caller reads on its interval instead

    def version(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def wait(self, seen: int, timeout: float, stop: threading.Event | None = None) -> None:
        """Return once the version differs from `seen`, after `timeout`, or on `stop`."""
        deadline = time.monotonic() + timeout
        while self.version() == seen:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if stop is not None:
                if stop.wait(min(CHECK_EVERY, left)):
                    return
            else:
                time.sleep(min(CHECK_EVERY, left))

    def close(self) -> None:
        self._conn.close()
