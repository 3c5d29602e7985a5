"""The `eventsourcing` library's side of the peer benchmark, in a process of its own.

    python -m benchmarks.peer_eventsourcing   (started by bench_peers.py)

Used the way its documentation shows: an `Aggregate` whose command methods
are `@event` decorated (one event per command), an `Application` with its
SQLite persistence module (`PERSISTENCE_MODULE=eventsourcing.sqlite`, which
switches the file to WAL; SQLite's default `synchronous` in WAL mode is FULL,
checked below), `app.save(...)` and `app.repository.get(id)`, snapshots by
`snapshotting_intervals`. This module imports nothing of eventsource.
"""

from __future__ import annotations

import gc
import os
import random
import sqlite3
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

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


class Order(Aggregate):
    @event("Placed")
    def __init__(self, customer_id: str, currency: str, placed_at: datetime) -> None:
        self.status = "placed"
        self.customer_id = customer_id
        self.currency = currency
        self.total = Decimal(0)
        self.line_count = 0
        self.paid = Decimal(0)
        self.tracking_number: str | None = None

    @event("LineAdded")
    def add_line(self, sku: str, quantity: int, unit_price: Decimal) -> None:
        self.total += unit_price * quantity
        self.line_count += 1

    @event("Paid")
    def pay(self, amount: Decimal, payment_id: UUID) -> None:
        self.status = "paid"
        self.paid = amount

    @event("Shipped")
    def ship(self, carrier: str, tracking_number: str) -> None:
        self.status = "shipped"
        self.tracking_number = tracking_number


class Orders(Application[UUID]):
    pass


def snapshotting(every: int) -> type[Orders]:
    class SnapshottedOrders(Orders):
        snapshotting_intervals: ClassVar[dict[Any, int]] = {Order: every}

    return SnapshottedOrders


def open_app(cls: type[Orders], path: Path) -> Orders:
    app = cls(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)})
    # Durable commits on both sides: WAL with synchronous FULL (2).
    with sqlite3.connect(path) as check:
        mode = check.execute("PRAGMA journal_mode").fetchone()[0]
    synchronous = app.recorder.datastore.pool.get_connection(is_writer=False)  # type: ignore[attr-defined]
    try:
        level = synchronous._sqlite_conn.execute("PRAGMA synchronous").fetchone()[0]
    finally:
        app.recorder.datastore.pool.put_connection(synchronous)  # type: ignore[attr-defined]
    if mode != "wal" or level != 2:
        raise RuntimeError(f"eventsourcing's SQLite runs journal_mode={mode} synchronous={level}")
    return app


def state(order: Order) -> dict[str, Any]:
    return order_state(
        order.status, order.customer_id, order.total, order.line_count, order.version
    )


class Side:
    def __init__(self) -> None:
        self.plan: StorePlan | None = None
        self.directory = Path()
        self.seed = 0
        self.app: Orders | None = None
        self.stream: UUID | None = None
        self.prepared: list[Any] = []

    def setup(
        self, workload: str, plan: dict[str, Any], seed: int, directory: str
    ) -> dict[str, Any]:
        assert workload in WORKLOADS
        self.plan = p = StorePlan(**plan)
        self.seed, self.directory = seed, Path(directory)
        if self.app is not None:
            self.app.close()
        path = self.directory / f"eventsourcing-{workload}.db"
        if workload == "snapshot":
            self.app = open_app(snapshotting(p.snapshot_every), path)
            self.stream = self._build(p.snapshot_events, p.snapshot_every)
        else:
            self.app = open_app(Orders, path)
            if workload == "replay":
                self.stream = self._build(p.replay_events, p.snapshot_every)
        gc.collect()
        reset_peak_rss()  # the peak of the workload, not of its set-up
        return {}

    def _build(self, events: int, every: int) -> UUID:
        assert self.app is not None
        rng = random.Random(f"{self.seed}:stream")
        order = Order("customer-stream", "EUR", PLACED_AT)
        for line in lines(rng, events - 1):
            order.add_line(line.sku, line.quantity, line.unit_price)
            if order.version % every == 0:
                self.app.save(order)
        self.app.save(order)
        return order.id

    def prepare(self, workload: str, index: int) -> dict[str, Any]:
        """Build the round's aggregates (untimed)."""
        assert self.plan is not None
        p, rng = self.plan, random.Random(f"{self.seed}:{workload}:{index}")
        if workload == "single":
            self.prepared = [
                Order(f"customer-{rng.randrange(10**5)}", "EUR", PLACED_AT)
                for _ in range(p.single_saves)
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
        order = Order(f"customer-{rng.randrange(10**5)}", "EUR", PLACED_AT)
        for line in lines(rng, self.plan.events_per_order - 3):
            order.add_line(line.sku, line.quantity, line.unit_price)
        order.pay(order.total, UUID(int=rng.getrandbits(128), version=4))
        order.ship("DHL", f"JD{rng.randrange(10**12):012d}")
        return order

    def step(self, workload: str, start: int, stop: int) -> dict[str, Any]:
        """Time items `start` to `stop` of the round's work (saves, or gets)."""
        app = self.app
        assert app is not None
        items = self.prepared[start:stop]
        if workload == "single":
            seconds = timed(lambda: [app.save(order) for order in items])
            units = len(items)
        elif workload == "bulk":
            seconds = timed(lambda: [app.save(*orders) for orders in items])
            units = sum(o.version for orders in items for o in orders)
        else:
            seconds = timed(lambda: [app.repository.get(stream) for stream in items])
            units = len(items)
        return {"seconds": seconds, "units": units}

    def check(self, workload: str) -> dict[str, Any]:
        """What the round stored or loaded: the last aggregate's state, the events stored."""
        app = self.app
        assert app is not None
        gc.unfreeze()
        last = self.prepared[-1]
        if workload == "bulk":
            last = last[-1]
        aggregate_id = last.id if workload in ("single", "bulk") else last
        return {
            "state": state(app.repository.get(aggregate_id)),
            "stored": app.recorder.max_notification_id(),
        }

    def finish(self) -> dict[str, Any]:
        return {"peak_rss_mib": peak_rss_mib()}

    def close(self) -> dict[str, Any]:
        if self.app is not None:
            self.app.close()
            self.app = None
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
            "versions": lambda: {"library": "eventsourcing", "pid": os.getpid()},
        }
    )


if __name__ == "__main__":
    main()
