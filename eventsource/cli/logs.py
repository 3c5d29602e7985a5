"""The command's logging: readable lines on a terminal, JSON lines for machines.

Library code only ever calls `logging.getLogger(__name__)`; the command is
what configures logging, and it keeps the chatty third-party loggers
(APScheduler, librdkafka, Alembic) at WARNING unless asked for debug output.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import UTC, datetime
from typing import Any

import orjson

from eventsource.identity import current_consumer

QUIET = ("apscheduler", "alembic", "eventsource.kafka")
# Attributes of a record that are not extras given by the caller.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the process's
    identity, and any extra fields (a worker's `projection`, say)."""

    def __init__(self, worker: str | None = None) -> None:
        super().__init__()
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.worker = worker or f"{self.host}-{self.pid}"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "host": self.host,
            "pid": self.pid,
            "worker": self.worker,
            "thread": record.threadName,
        }
        consumer = current_consumer.get()
        if consumer is not None:
            entry["projection"] = consumer
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure(*, verbose: int, json_lines: bool, worker: str | None = None) -> None:
    """Set up the root logger for the command (once per process)."""
    level = logging.DEBUG if verbose > 1 else logging.INFO
    handler = logging.StreamHandler()
    if json_lines:
        handler.setFormatter(JsonFormatter(worker))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)
