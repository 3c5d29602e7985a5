"""Pausing the cyclic garbage collector while batches of records are built.

Building a batch allocates tens of thousands of small tuples and lists, and
CPython's collector runs every few hundred allocations, each time scanning
every live container: on a big heap that is most of the cost of the batch
(measured: 9 of 11 µs per relayed event). The records built are acyclic, so
nothing is lost by collecting after the batch instead of during it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager


def paused_gc() -> AbstractContextManager[None]:
    """Hold cyclic collection for the block (restoring the caller's setting after)."""
    return BatchedCollection(every=1).batch()


class BatchedCollection:
    """Cyclic collection held across a loop's batches and let run after every
    `every`-th one.

    A collection walks each young object still alive, and between two batches
    that is a batch's worth of records and events however many batches ran
    before: letting it run after every batch cost a Kafka worker a tenth of
    its time (measured), once per `every` batches costs an `every`-th of
    that. Only cyclic garbage waits longer; everything else is freed as it
    always is. Call `release` when the loop ends.
    """

    def __init__(self, every: int) -> None:
        self.every = every
        self._batches = 0
        self._holding = False

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Hold collection for one batch, and on after it unless it is the `every`-th."""
        if not self._holding:
            if not gc.isenabled():  # turned off by someone else: theirs to turn on
                yield
                return
            gc.disable()
            self._holding = True
        try:
            yield
        finally:
            self._batches += 1
            if self._batches >= self.every:
                self.release()

    def release(self) -> None:
        """Let collection run again (if this object is what holds it)."""
        self._batches = 0
        if self._holding:
            self._holding = False
            gc.enable()
