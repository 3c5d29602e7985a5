"""Who a running process is, as operators name it."""

from __future__ import annotations

import os
import socket
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass(frozen=True)
class Identity:
    """A worker process as operators name it: `name` (also its Kafka `client.id`)."""

    name: str
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @classmethod
    def of_this_process(cls, name: str | None = None) -> Identity:
        """`name` (say a pod's name), or `<host>-<pid>`."""
        host = socket.gethostname()
        return cls(name=name or f"{host}-{os.getpid()}", host=host)


# The consumer (projection, reactor) whose worker runs on this thread: log
# formatters that want it (the command's JSON lines) read it.
current_consumer: ContextVar[str | None] = ContextVar("eventsource_consumer", default=None)
