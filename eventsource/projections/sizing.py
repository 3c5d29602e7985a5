"""How many events a worker asks the log for: about a quarter of a second of work.

A batch is one transaction: its commit (a durable write of the view, an
fsync on SQLite), its positions and its statements are paid once for all of
its events, so a fast fold wants large batches. But a worker beats its
heartbeat and answers its inbox only between batches, and Kafka drops a
consumer that does not poll for five minutes, so a slow handler wants small
ones. A count alone cannot serve both: a batch of 20,000 events is a
quarter of a second of a fast fold and five hours of a handler that calls a
remote service.

So a batch is sized by time, as Kafka Streams commits by time: after each
batch the worker divides its target by what an event took, counting
everything after the poll (folding, writing, committing), and asks for that
many next time, within `1 .. cap`. It starts small, so that the first batch
of a slow handler is short too; a fast fold reaches the cap within a few
batches. A batch that the log could not fill says as much about the speed
as a full one: the time is counted from when the poll returned.
"""

from __future__ import annotations

from eventsource.errors import ConfigurationError

# Folding, writing and committing one batch should take about this long.
TARGET_SECONDS = 0.25
# The first poll's size, before anything was measured.
FIRST_BATCH = 100


class BatchSizer:
    """The size of a worker's next poll, from how long its last batch took.

    ::

        sizer = BatchSizer(cap=20_000)
        messages = log.poll(sizer.size, timeout)
        started = time.monotonic()
        ...  # fold, write, commit
        sizer.took(len(messages), time.monotonic() - started)
    """

    __slots__ = ("cap", "size", "target")

    def __init__(self, cap: int, *, target: float = TARGET_SECONDS) -> None:
        if cap < 1:
            raise ConfigurationError(f"batch_size must be at least 1 event, not {cap}")
        self.cap = cap
        self.target = target
        self.size = min(cap, FIRST_BATCH)

    def took(self, events: int, seconds: float) -> None:
        """`events` were folded, written and committed in `seconds`."""
        if events <= 0:
            return  # an empty poll says nothing about the handler
        if seconds <= 0:
            self.size = self.cap
            return
        self.size = max(1, min(self.cap, int(self.target * events / seconds)))
