"""What both sides of the peer benchmark share, importing neither library.

Each contender runs in a process of its own (so that its peak memory is its
own) and serves the driver (`bench_peers.py`) one JSON line per request on
stdin/stdout. The orders' contents come from here, from one seed, so both
sides store the same events; each side builds its own aggregates from them.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

# -- the workloads --------------------------------------------------------------------


@dataclass(frozen=True)
class StorePlan:
    rounds: int  # timed rounds per workload (after one warm-up round)
    single_saves: int  # saves per round of the single-save workload
    bulk_saves: int  # saves of `bulk_orders` orders per round
    bulk_orders: int  # aggregates per save
    events_per_order: int  # events per aggregate in a bulk save
    replay_events: int  # events of the stream that `get` replays in full
    replays: int  # full-replay gets per round
    snapshot_every: int
    snapshot_gets: int  # gets per round of the snapshotted stream

    @property
    def snapshot_events(self) -> int:
        """The worst case: the most events after the latest snapshot."""
        return self.replay_events + self.snapshot_every - 1


STORE_DEFAULT = StorePlan(
    rounds=15,
    single_saves=200,
    bulk_saves=5,
    bulk_orders=100,
    events_per_order=10,
    replay_events=10_000,
    replays=2,
    snapshot_every=100,
    snapshot_gets=200,
)
STORE_QUICK = StorePlan(
    rounds=3,
    single_saves=50,
    bulk_saves=2,
    bulk_orders=100,
    events_per_order=10,
    replay_events=10_000,
    replays=1,
    snapshot_every=100,
    snapshot_gets=50,
)
WORKLOADS = ("single", "bulk", "replay", "snapshot")


# -- the orders' contents -------------------------------------------------------------


PLACED_AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int
    unit_price: Decimal


def lines(rng: random.Random, count: int) -> list[Line]:
    """`count` order lines drawn from `rng`."""
    return [
        Line(
            f"SKU-{rng.randrange(10**6):06d}",
            rng.randrange(1, 10),
            Decimal(rng.randrange(100, 100_000)) / 100,
        )
        for _ in range(count)
    ]


def order_state(
    status: str, customer_id: str, total: Decimal, line_count: int, version: int
) -> dict[str, Any]:
    """The state both sides report for a loaded order (compared before any figure)."""
    return {
        "status": status,
        "customer_id": customer_id,
        "total": str(total),
        "line_count": line_count,
        "version": version,
    }


# -- memory -----------------------------------------------------------------------------


def reset_peak_rss() -> None:
    """Start a new peak (Linux: VmHWM drops to the current resident size)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        pass


def peak_rss_mib() -> float:
    """The process's peak resident size since the last reset, in MiB."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the protocol -------------------------------------------------------------------------


Handler = Callable[..., dict[str, Any]]


def serve(handlers: dict[str, Handler]) -> None:
    """Answer the driver's requests, one JSON object per line, until stdin closes.

    A request is `{"op": name, **arguments}`; the answer is the handler's
    dict, or `{"error": text}` (the driver stops on it).
    """
    out = sys.stdout
    sys.stdout = sys.stderr  # a stray print must not corrupt the protocol
    for line in _lines():
        request = json.loads(line)
        op = request.pop("op")
        try:
            answer = handlers[op](**request)
        except Exception as exc:
            answer = {"error": f"{op}: {type(exc).__name__}: {exc}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()


def _lines() -> Iterator[str]:
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        yield line


def timed(action: Callable[[], object]) -> float:
    """Seconds `action` took."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start
