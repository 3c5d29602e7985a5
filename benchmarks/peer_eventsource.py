"""eventsource's side of the peer benchmark, in a process of its own.

    python -m benchmarks.peer_eventsource   (started by bench_peers.py)

The same orders as the peer's (`benchmarks/peer_data.py`), as the order
aggregate of `benchmarks/model.py`: `Repository.save(...)` and
`Repository.get(id)` on an `EventStore` of a SQLite file (WAL,
`synchronous=FULL`, the default), snapshots by `snapshot_every`.
"""

from __future__ import annotations

import gc
import os
import random
from pathlib import Path
from typing import Any
from uuid import UUID

from benchmarks.model import Order, OrderPlaced
from benchmarks.peer_data import (
    PLACED_AT,
    WORKLOADS,
    StorePlan,
    lines,
    order_state,
    peak_rss_mib,
    reset_peak_rss,
    serve,
    timed,
)
from eventsource import EventStore, Repository


def place(order_id: str, customer_id: str) -> Order:
    order = Order(order_id)
    order.trigger(OrderPlaced(customer_id=customer_id, currency="EUR", placed_at=PLACED_AT))
    return order


def state(order: Order) -> dict[str, Any]:
    return order_state(
        order.status, order.customer_id, order.total, order.line_count, order.version
    )


class Side:
    def __init__(self) -> None:
        self.plan: StorePlan | None = None
        self.directory = Path()
        self.seed = 0
        self.store: EventStore | None = None
        self.repository: Repository[Order] | None = None
        self.stream = ""
        self.prepared: list[Any] = []
        self.count = 0

    def setup(
        self, workload: str, plan: dict[str, Any], seed: int, directory: str
    ) -> dict[str, Any]:
        assert workload in WORKLOADS
        self.plan = p = StorePlan(**plan)
        self.seed, self.directory = seed, Path(directory)
        self.close()
        self.store = EventStore(f"sqlite:///{self.directory / f'eventsource-{workload}.db'}")
        self.store.create_schema()
        every = p.snapshot_every if workload == "snapshot" else None
        self.repository = Repository(self.store, Order, snapshot_every=every)
        if workload == "snapshot":
            self._build(p.snapshot_events, p.snapshot_every)
        elif workload == "replay":
            self._build(p.replay_events, p.snapshot_every)
        gc.collect()
        reset_peak_rss()  # the peak of the workload, not of its set-up
        return {}

    def _build(self, events: int, every: int) -> None:
        assert self.repository is not None
        rng = random.Random(f"{self.seed}:stream")
        self.stream = "stream"
        order = place(self.stream, "customer-stream")
        for line in lines(rng, events - 1):
            order.add_line(line.sku, line.quantity, line.unit_price)
            if order.version % every == 0:
                self.repository.save(order)
        self.repository.save(order)

    def _id(self) -> str:
        self.count += 1
        return f"order-{self.count}"

    def prepare(self, workload: str, index: int) -> dict[str, Any]:
        """Build the round's aggregates (untimed)."""
        assert self.plan is not None
        p, rng = self.plan, random.Random(f"{self.seed}:{workload}:{index}")
        if workload == "single":
            self.prepared = [
                place(self._id(), f"customer-{rng.randrange(10**5)}") for _ in range(p.single_saves)
            ]
        elif workload == "bulk":
            self.prepared = [
                [self._full_order(rng) for _ in range(p.bulk_orders)] for _ in range(p.bulk_saves)
            ]
        else:
            gets = p.replays if workload == "replay" else p.snapshot_gets
            self.prepared = [self.stream] * gets
        gc.collect()
        gc.freeze()  # the round's data: a collection must not walk it on someone's clock
        return {}

    def _full_order(self, rng: random.Random) -> Order:
        assert self.plan is not None
        order = place(self._id(), f"customer-{rng.randrange(10**5)}")
        for line in lines(rng, self.plan.events_per_order - 3):
            order.add_line(line.sku, line.quantity, line.unit_price)
        order.pay(UUID(int=rng.getrandbits(128), version=4))
        order.ship("DHL", f"JD{rng.randrange(10**12):012d}")
        return order

    def step(self, workload: str, start: int, stop: int) -> dict[str, Any]:
        """Time items `start` to `stop` of the round's work (saves, or gets)."""
        repository, store = self.repository, self.store
        assert repository is not None
        assert store is not None
        items = self.prepared[start:stop]
        if workload == "single":
            seconds = timed(lambda: [repository.save(order) for order in items])
            units = len(items)
        elif workload == "bulk":
            seconds = timed(lambda: [repository.save(*orders) for orders in items])
            units = sum(o.version for orders in items for o in orders)
        else:
            seconds = timed(lambda: [repository.get(stream) for stream in items])
            units = len(items)
        return {"seconds": seconds, "units": units}

    def check(self, workload: str) -> dict[str, Any]:
        """What the round stored or loaded: the last aggregate's state, the events stored."""
        repository, store = self.repository, self.store
        assert repository is not None
        assert store is not None
        gc.unfreeze()
        last = self.prepared[-1]
        if workload == "bulk":
            last = last[-1]
        aggregate_id = last.id if workload in ("single", "bulk") else last
        return {
            "state": state(repository.get(aggregate_id)),
            "stored": store.head_position(),
        }

    def finish(self) -> dict[str, Any]:
        return {"peak_rss_mib": peak_rss_mib()}

    def close(self) -> dict[str, Any]:
        if self.store is not None:
            self.store.close()
            self.store = None
        return {}


def main() -> None:
    side = Side()
    serve(
        {
            "setup": side.setup,
            "prepare": side.prepare,
            "step": side.step,
            "check": side.check,
            "finish": side.finish,
            "close": side.close,
            "versions": lambda: {"library": "eventsource", "pid": os.getpid()},
        }
    )


if __name__ == "__main__":
    main()
