"""Pausing the cyclic garbage collector while a batch of records is built.

Building a batch allocates tens of thousands of small tuples and lists, and
CPython's collector runs every few hundred allocations, each time scanning
every live container: on a big heap that is most of the cost of the batch
(measured: 9 of 11 µs per relayed event). The records built are acyclic, so
nothing is lost by collecting after the batch instead of during it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """Hold cyclic collection for the block (restoring the caller's setting after)."""
    enabled = gc.isenabled()
    if enabled:
        gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
