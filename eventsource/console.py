"""Progress and tables for the command line: rich on a terminal, plain lines otherwise."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

PLAIN_EVERY = 5.0
# Off a terminal, progress goes to stderr as plain lines, or, when the command
# logs JSON (`--log-format json`), as log records of this logger.
progress_log = logging.getLogger("eventsource.progress")
_as_log_records = False


def progress_as_log_records(on: bool = True) -> None:
    """Report progress as log records (for machine-read logs) instead of lines."""
    global _as_log_records  # noqa: PLW0603 - one switch for the process's command
    _as_log_records = on


def is_terminal() -> bool:
    return sys.stderr.isatty()


# Reports open at the same time (one per projection of `projection run`) are
# rows of one live display: two displays on one terminal overwrite each other.
_live_lock = threading.Lock()
_live: Progress | None = None
_live_users = 0


def _shared_progress() -> Progress:
    global _live, _live_users  # noqa: PLW0603 - one terminal, one display
    with _live_lock:
        if _live is None:
            _live = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:>10} {task.fields[lag]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            _live.start()
        _live_users += 1
        return _live


def _release_progress() -> None:
    global _live, _live_users  # noqa: PLW0603 - one terminal, one display
    with _live_lock:
        _live_users -= 1
        if _live_users == 0 and _live is not None:
            _live.stop()
            _live = None


class ProgressReport:
    """Shows `done / total` with rate, lag and time left.

    On a terminal it is a rich progress bar; otherwise a plain line every
    few seconds, so that logs of long rebuilds and relays stay readable.
    """

    def __init__(self, description: str, *, total: int | None = None, unit: str = "events") -> None:
        self.description = description
        self.unit = unit
        self.total = total
        self.done = 0
        self.lag: int | None = None
        self._started = time.monotonic()
        self._last_line = 0.0
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressReport:
        if is_terminal():
            self._progress = _shared_progress()
            self._task = self._progress.add_task(
                self.description, total=self.total, rate="", lag=""
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            _release_progress()
        elif exc_type is None:
            self._line(final=True)
        elif self.done:
            self._line(final=True, state="stopped after ")

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self._started
        return self.done / elapsed if elapsed > 0 else 0.0

    def update(self, done: int, *, total: int | None = None, lag: int | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total
        self.lag = lag
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task,
                completed=done,
                total=self.total,
                rate=f"{self.rate:,.0f}/s",
                lag="" if lag is None else f"lag {lag:,}",
            )
        elif time.monotonic() - self._last_line >= PLAIN_EVERY:
            self._line()

    def _line(self, *, final: bool = False, state: str | None = None) -> None:
        self._last_line = time.monotonic()
        total = f"/{self.total:,}" if self.total is not None else ""
        lag = f", lag {self.lag:,}" if self.lag is not None else ""
        eta = ""
        if not final and self.total and self.rate > 0 and self.done < self.total:
            eta = f", {(self.total - self.done) / self.rate:,.0f} s left"
        if state is None:
            state = "done: " if final else ""
        text = (
            f"{self.description}: {state}{self.done:,}{total} {self.unit}"
            f" ({self.rate:,.0f}/s{lag}{eta})"
        )
        if _as_log_records:
            progress_log.info("%s", text)
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S ")
        print(f"{stamp}{text}", file=sys.stderr, flush=True)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A table on stdout (rich renders plainly when stdout is not a terminal)."""
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console(width=160 if not sys.stdout.isatty() else None).print(table)


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")
