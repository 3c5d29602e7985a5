"""Noticing commits to a store, by any connection of any process.

A reader waiting for new events asks cheaply whether anyone has committed,
instead of reading the store every 50 or 100 ms:

* SQLite: `PRAGMA data_version` changes whenever another connection has
  committed; a few microseconds on a read-only connection of our own.
* PostgreSQL: the events table NOTIFYs channel `eventsource_appended` when
  an append commits (migration 0004); a connection of our own LISTENs.

Either way the reader notes a version before it reads and waits until it
changes, so a commit between the read and the wait is never missed.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import weakref
from abc import ABC, abstractmethod
from pathlib import Path

import psycopg

from eventsource.store.eventstore import EventStore

CHECK_EVERY = 0.005  # how often a SQLite store is asked for a new commit
_LISTEN_SLICE = 0.1  # a PostgreSQL wait looks at `stop` this often
CHANNEL = "eventsource_appended"


class CommitWatch(ABC):
    """Tells whether a store has had a commit since a version noted."""

    @staticmethod
    def of(store: EventStore) -> CommitWatch | None:
        """A watch on `store`'s database, or None if it cannot be watched."""
        url = store.engine.url
        backend = url.get_backend_name()
        if backend == "postgresql":
            conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
            try:
                return _PostgresWatch(conninfo)
            except psycopg.Error:
                return None  # the caller reads on its interval instead
        path = url.database
        if backend != "sqlite" or not path or path == ":memory:" or path.startswith("file:"):
            return None  # in memory, or a URI filename whose options are the engine's
        try:
            return _SqliteWatch(path)
        except sqlite3.Error:
            return None  # not there yet

    @abstractmethod
    def version(self) -> int:
        """A number that changes when someone commits."""

    @abstractmethod
    def wait(self, seen: int, timeout: float, stop: threading.Event | None = None) -> None:
        """Return once the version differs from `seen`, after `timeout`, or on `stop`."""

    @abstractmethod
    def close(self) -> None:
        """Release the watching connection."""


class _SqliteWatch(CommitWatch):
    def __init__(self, path: str) -> None:
        # Read-only: watching must never create or change the file.
        uri = f"{Path(path).absolute().as_uri()}?mode=ro"
        self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)

    def version(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def wait(self, seen: int, timeout: float, stop: threading.Event | None = None) -> None:
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


class _PostgresWatch(CommitWatch):
    def __init__(self, conninfo: str) -> None:
        self._conn = psycopg.connect(conninfo, autocommit=True)
        # A reader dropped without close() must not keep its connection open.
        self._release = weakref.finalize(self, self._conn.close)
        self._conn.execute(f"LISTEN {CHANNEL}")
        self._heard = 0

    def _drain(self, timeout: float) -> None:
        # One notification per call at most: take all that have arrived.
        while True:
            got = sum(1 for _ in self._conn.notifies(timeout=timeout, stop_after=1))
            self._heard += got
            if not got:
                return
            timeout = 0

    def version(self) -> int:
        # A lost connection hears nothing more: the caller still reads on its interval.
        with contextlib.suppress(psycopg.Error):
            self._drain(0)
        return self._heard

    def wait(self, seen: int, timeout: float, stop: threading.Event | None = None) -> None:
        deadline = time.monotonic() + timeout
        while self.version() == seen:
            left = deadline - time.monotonic()
            if left <= 0 or (stop is not None and stop.is_set()):
                return
            try:
                self._drain(min(_LISTEN_SLICE, left))
            except psycopg.Error:
                # The listening connection is gone: wait out the interval.
                if stop is not None:
                    stop.wait(left)
                else:
                    time.sleep(left)
                return

    def close(self) -> None:
        self._release()
