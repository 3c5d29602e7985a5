"""Event store benchmarks: the framework against hand-written code and the raw driver.

    .venv/bin/python -m benchmarks.bench_store [--backend sqlite|postgres|all]
                                               [--events N] [--quick] [--json]

Four benchmarks, each on SQLite and PostgreSQL (see benchmarks/README.md):

1. append: orders of 10 events saved 100 aggregates per `Repository.save`;
2. single save: one new aggregate with one event per durable transaction;
3. load: `Repository.get` of 10,000 events with snapshots every 100 versus
   100 events without a snapshot;
4. read: the global log with decoding, page by page.

Throughput is the median of several timed runs, after an untimed warm-up
run; within a run the contenders take turns batch by batch (or page by page,
or save by save), so that drift in the machine's speed or another process's
disk traffic hits all of them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import Any, TypeVar

from benchmarks.backends import Backend, open_postgres, open_sqlite
from benchmarks.model import (
    EVENTS_PER_ORDER,
    LineAdded,
    Order,
    OrderPaid,
    OrderPlaced,
    OrderShipped,
    add_random_line,
    full_orders,
    placed_orders,
)
from benchmarks.report import (
    Table,
    header_lines,
    log,
    machine,
    median,
    millis,
    percentile,
    quiet_gc,
    rate,
    ratio,
    render,
    turns,
    verdict,
)
from eventsource import Repository

T = TypeVar("T")
CONTENDERS = ("framework", "baseline", "floor")
TARGET_VS_BASELINE = 0.8
TARGET_LOAD_RATIO = 2.0


@dataclass(frozen=True)
class Plan:
    events: int  # appended per timed run, and read back per timed run
    runs: int  # timed runs of append and read (plus one warm-up run)
    batch: int  # aggregates per save
    saves: int  # timed single saves per contender
    gets: int  # timed loads per aggregate
    page: int  # read_log limit
    big_events: int = 10_000
    small_events: int = 100
    snapshot_every: int = 100
    replays: int = 3  # timed full replays of the big aggregate (slow, informative)


DEFAULT = Plan(events=20_000, runs=5, batch=100, saves=1_000, gets=100, page=1000)
QUICK = Plan(events=2_000, runs=3, batch=100, saves=300, gets=30, page=1000, replays=1)


def each(action: Callable[[T], object], items: list[T]) -> Callable[[], None]:
    """A callable that applies `action` to every item in turn."""

    def run() -> None:
        for item in items:
            action(item)

    return run


def interleaved(steps: dict[str, list[Callable[[], object]]], offset: int) -> dict[str, float]:
    """Run step j of every contender before step j + 1 of any; seconds per contender.

    The contenders take turns batch by batch (who goes first rotates), so a
    change in the machine's speed, or another process's disk traffic, hits
    all of them alike.
    """
    totals = dict.fromkeys(steps, 0.0)
    names = tuple(steps)
    with quiet_gc():
        for j in range(len(steps[names[0]])):
            for name in turns(names, offset + j):
                start = time.perf_counter()
                steps[name][j]()
                totals[name] += time.perf_counter() - start
    return totals


def timed(action: Callable[[], object]) -> float:
    with quiet_gc():
        start = time.perf_counter()
        action()
        return time.perf_counter() - start


# -- 1. append ------------------------------------------------------------------------


def bench_append(backend: Backend, plan: Plan, rng: random.Random) -> dict[str, Any]:
    repository = Repository(backend.store, Order)
    codec, baseline, floor = backend.store.codec, backend.baseline, backend.floor
    orders_per_run = max(1, plan.events // EVENTS_PER_ORDER)
    samples: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    for run in range(plan.runs + 1):  # run 0 warms up
        count = orders_per_run if run else max(plan.batch, orders_per_run // 10)
        orders = full_orders(f"append-{run}", count, rng)
        batches = [orders[i : i + plan.batch] for i in range(0, count, plan.batch)]
        event_batches = [[e for order in batch for e in order.pending_events] for batch in batches]
        floor_batches = [[floor.row(codec.encode(e)) for e in evs] for evs in event_batches]
        seconds = interleaved(
            {
                "framework": [partial(repository.save, *batch) for batch in batches],
                "baseline": [partial(baseline.append, events) for events in event_batches],
                "floor": [partial(floor.append, rows) for rows in floor_batches],
            },
            offset=run,
        )
        if run:
            for name, total in seconds.items():
                samples[name].append(count * EVENTS_PER_ORDER / total)
        log(f"  [{backend.name}] append run {run}/{plan.runs}" + (" (warm-up)" if not run else ""))
    _check_same_rows(backend, 200)
    return _throughput(samples, floor_method=floor.method)


def _check_same_rows(backend: Backend, limit: int) -> None:
    """The three contenders stored byte-identical rows (so they did the same work)."""
    framework = backend.raw_rows("framework", limit)
    for other in ("baseline", "floor"):
        if backend.raw_rows(other, limit) != framework:
            raise AssertionError(f"{backend.name}: {other} stored other rows than the framework")


def _throughput(samples: dict[str, list[float]], **extra: Any) -> dict[str, Any]:
    rates = {name: median(values) for name, values in samples.items()}
    vs_baseline = rates["framework"] / rates["baseline"]
    return {
        "unit": "events/s",
        "statistic": f"median of {len(samples['framework'])} runs",
        **rates,
        "framework/baseline": vs_baseline,
        "framework/floor": rates["framework"] / rates["floor"],
        "target": TARGET_VS_BASELINE,
        "met": vs_baseline >= TARGET_VS_BASELINE,
        "samples": samples,
        **extra,
    }


# -- 2. single save latency -----------------------------------------------------------


def bench_single_save(backend: Backend, plan: Plan, rng: random.Random) -> dict[str, Any]:
    repository = Repository(backend.store, Order)
    codec, baseline, floor = backend.store.codec, backend.baseline, backend.floor
    warm = max(10, plan.saves // 10)
    orders = placed_orders("single", plan.saves + warm, rng)
    events = [order.pending_events[0] for order in orders]
    rows = [floor.row(codec.encode(event)) for event in events]
    latencies: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    with quiet_gc():
        for i, (order, event, row) in enumerate(zip(orders, events, rows, strict=True)):
            actions: dict[str, Callable[[], object]] = {
                "framework": partial(repository.save, order),
                "baseline": partial(baseline.append_one, event),
                "floor": partial(floor.append_one, row),
            }
            for name in turns(CONTENDERS, i):
                start = time.perf_counter()
                actions[name]()
                elapsed = time.perf_counter() - start
                if i >= warm:
                    latencies[name].append(elapsed)
    log(f"  [{backend.name}] single save: {plan.saves} per contender")
    result: dict[str, Any] = {"unit": "saves/s", "saves": plan.saves}
    for name, values in latencies.items():
        result[name] = {
            "p50_s": percentile(values, 50),
            "p99_s": percentile(values, 99),
            "rate": len(values) / sum(values),
        }
    fw, base = result["framework"]["rate"], result["baseline"]["rate"]
    result["framework/baseline"] = fw / base
    result["framework/floor"] = fw / result["floor"]["rate"]
    result["target"] = TARGET_VS_BASELINE
    result["met"] = fw / base >= TARGET_VS_BASELINE
    return result


# -- 3. load --------------------------------------------------------------------------


def _build(repository: Repository[Order], order_id: str, events: int, rng: random.Random) -> None:
    """An order of `events` events, saved every `snapshot_every` (or 100) events."""
    every = repository.snapshot_every or 100
    order = Order.place(order_id, "customer-1")
    while order.version < events:
        add_random_line(order, rng)
        if order.version % every == 0:
            repository.save(order)
    repository.save(order)


def bench_load(backend: Backend, plan: Plan, rng: random.Random) -> dict[str, Any]:
    plain = Repository(backend.store, Order)
    snapshotted = Repository(backend.store, Order, snapshot_every=plan.snapshot_every)
    tail_events = plan.big_events + plan.snapshot_every - 1
    _build(plain, "load-small", plan.small_events, rng)
    _build(snapshotted, "load-big", plan.big_events, rng)
    _build(snapshotted, "load-tail", tail_events, rng)
    cases: dict[str, Callable[[], Order]] = {
        "small": lambda: plain.get("load-small"),
        "snapshot": lambda: snapshotted.get("load-big"),
        "snapshot_tail": lambda: snapshotted.get("load-tail"),
    }
    _check_snapshot_state(plain.get("load-big"), snapshotted.get("load-big"))
    samples: dict[str, list[float]] = {name: [] for name in cases}
    names = tuple(cases)
    for i in range(plan.gets + 5):  # the first 5 rounds warm up
        for name in turns(names, i):
            seconds = timed(cases[name])
            if i >= 5:
                samples[name].append(seconds)
    replay = [timed(lambda: plain.get("load-big")) for _ in range(plan.replays)]
    log(f"  [{backend.name}] load: {plan.gets} gets per aggregate")
    latency = {name: median(values) for name, values in samples.items()}
    snapshot_ratio = latency["snapshot"] / latency["small"]
    return {
        "unit": "s per get",
        "statistic": f"median of {plan.gets} gets",
        "events": {
            "small": plan.small_events,
            "snapshot": plan.big_events,
            "snapshot_tail": tail_events,
        },
        **latency,
        "full_replay": median(replay),
        "snapshot/small": snapshot_ratio,
        "snapshot_tail/small": latency["snapshot_tail"] / latency["small"],
        "target": TARGET_LOAD_RATIO,
        "met": snapshot_ratio <= TARGET_LOAD_RATIO,
    }


def _check_snapshot_state(replayed: Order, restored: Order) -> None:
    if vars(replayed) != vars(restored):
        raise AssertionError("the snapshot restored another state than a full replay")


# -- 4. read the global log -----------------------------------------------------------


def bench_read(backend: Backend, plan: Plan) -> dict[str, Any]:
    store, baseline, floor = backend.store, backend.baseline, backend.floor
    limit = plan.page

    def framework(after: int) -> list[Any]:
        return [store.codec.decode(record) for record in store.read_log(after, limit)]

    # The pages start after these positions (positions may have gaps, so ask).
    starts: list[int] = []
    after, total = 0, 0
    while total < plan.events:
        last, items = baseline.read_page(after, limit)
        if not items:
            break
        starts.append(after)
        after, total = last, total + len(items)
    if framework(0) != baseline.read_page(0, limit)[1]:
        raise AssertionError(f"{backend.name}: the baseline built other events than the codec")
    samples: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    for run in range(plan.runs + 1):  # run 0 warms up
        seconds = interleaved(
            {
                "framework": [partial(framework, after) for after in starts],
                "baseline": [partial(baseline.read_page, after, limit) for after in starts],
                "floor": [partial(floor.read_page, after, limit) for after in starts],
            },
            offset=run,
        )
        if run:
            for name, elapsed in seconds.items():
                samples[name].append(total / elapsed)
    log(f"  [{backend.name}] read: {plan.runs} runs of {total} events")
    return _throughput(samples, page=limit)


# -- running and reporting ------------------------------------------------------------


def run_backend(backend: Backend, plan: Plan) -> dict[str, Any]:
    backend.baseline.register(OrderPlaced, LineAdded, OrderPaid, OrderShipped)
    rng = random.Random(20_260_101)
    return {
        "location": backend.location,
        "server_version": backend.server_version,
        "append": bench_append(backend, plan, rng),
        "single_save": bench_single_save(backend, plan, rng),
        "load": bench_load(backend, plan, rng),
        "read": bench_read(backend, plan),
    }


def throughput_table(title: str, results: dict[str, dict[str, Any]], key: str) -> Table:
    table = Table(
        title=title,
        columns=[
            "backend",
            "framework",
            "baseline",
            "floor",
            "fw/base",
            "fw/floor",
            "target",
            "met",
        ],
    )
    for backend, result in results.items():
        r = result[key]
        table.rows.append(
            [
                backend,
                rate(r["framework"]),
                rate(r["baseline"]),
                rate(r["floor"]),
                ratio(r["framework/baseline"]),
                ratio(r["framework/floor"]),
                f">= {r['target']}",
                verdict(r["met"]),
            ]
        )
    return table


def single_save_table(results: dict[str, dict[str, Any]], plan: Plan) -> Table:
    table = Table(
        title=f"2. Single save: one new aggregate, one event, durable commit"
        f" ({plan.saves} saves each, interleaved)",
        columns=["backend", "contender", "p50 ms", "p99 ms", "saves/s", "vs baseline", "met"],
        left=2,
    )
    for backend, result in results.items():
        r = result["single_save"]
        base = r["baseline"]["rate"]
        for name in CONTENDERS:
            own = r[name]
            is_fw = name == "framework"
            table.rows.append(
                [
                    backend if is_fw else "",
                    name,
                    millis(own["p50_s"]),
                    millis(own["p99_s"]),
                    rate(own["rate"]),
                    ratio(own["rate"] / base),
                    verdict(r["met"]) if is_fw else "",
                ]
            )
    table.notes.append(
        f"target: framework rate >= {TARGET_VS_BASELINE} x baseline;"
        " SQLite synchronous=FULL (WAL), PostgreSQL synchronous_commit as configured"
    )
    return table


def load_table(results: dict[str, dict[str, Any]], plan: Plan) -> Table:
    tail = plan.big_events + plan.snapshot_every - 1
    table = Table(
        title=f"3. Load: Repository.get latency in ms (median of {plan.gets})",
        columns=[
            "backend",
            f"{plan.small_events} ev",
            f"{plan.big_events:,} ev*",
            "ratio",
            f"{tail:,} ev*",
            "ratio",
            "replay",
            "target",
            "met",
        ],
    )
    for backend, result in results.items():
        r = result["load"]
        table.rows.append(
            [
                backend,
                millis(r["small"]),
                millis(r["snapshot"]),
                ratio(r["snapshot/small"]),
                millis(r["snapshot_tail"]),
                ratio(r["snapshot_tail/small"]),
                millis(r["full_replay"]),
                f"<= {r['target']}",
                verdict(r["met"]),
            ]
        )
    table.notes.append(
        f"*: snapshots every {plan.snapshot_every} events; the {tail:,}-event aggregate"
        f" replays {plan.snapshot_every - 1} events after its last snapshot;"
        f" ratio: versus the {plan.small_events}-event aggregate without a snapshot;"
        f" replay: the {plan.big_events:,} events without snapshots"
        f" (median of {plan.replays}), for scale"
    )
    return table


def tables(results: dict[str, dict[str, Any]], plan: Plan) -> list[Table]:
    runs = f"median of {plan.runs} runs of {plan.events:,} events"
    append = throughput_table(
        f"1. Append: orders of {EVENTS_PER_ORDER} events, {plan.batch} aggregates per save"
        f" (events/s, {runs})",
        results,
        "append",
    )
    append.notes.append(
        "baseline: orjson + SQLAlchemy Core executemany, one transaction per batch;"
        " floor: " + ", ".join(f"{b}: {r['append']['floor_method']}" for b, r in results.items())
    )
    read = throughput_table(
        f"4. Read the global log with decoding, pages of {plan.page} (events/s, {runs})",
        results,
        "read",
    )
    read.notes.append(
        "baseline: Core select + model_validate_json + metadata; floor: driver fetch + orjson.loads"
    )
    return [append, single_save_table(results, plan), load_table(results, plan), read]


def summary(results: dict[str, dict[str, Any]]) -> list[str]:
    missed = [
        f"{name} on {backend}"
        for backend, result in results.items()
        for name in ("append", "single_save", "load", "read")
        if not result[name]["met"]
    ]
    return ["", "targets: all met" if not missed else "targets missed: " + ", ".join(missed)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_store", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    parser.add_argument("--events", type=int, help="events per append and read run")
    parser.add_argument("--quick", action="store_true", help="a smaller run (~20 s)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("EVENTSOURCE_DATABASE_URL", ""),
        help="PostgreSQL URL of a user that may CREATE DATABASE"
        " (default: EVENTSOURCE_DATABASE_URL)",
    )
    parser.add_argument("--sqlite-dir", help="where the SQLite files go (default: the temp dir)")
    return parser.parse_args(argv)


def open_backends(args: argparse.Namespace) -> Iterator[Backend]:
    if args.backend in ("sqlite", "all"):
        yield open_sqlite(args.sqlite_dir)
    if args.backend in ("postgres", "all"):
        yield open_postgres(args.database_url)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.backend != "sqlite" and not args.database_url.startswith("postgres"):
        raise SystemExit(
            "the postgres backend needs a PostgreSQL URL: pass --database-url or run"
            ' `eval "$(bash scripts/services.sh env)"` first (or use --backend sqlite)'
        )
    plan = QUICK if args.quick else DEFAULT
    if args.events:
        plan = replace(plan, events=args.events)
    results: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    for backend in open_backends(args):
        log(f"{backend.name}: {backend.location}")
        try:
            results[backend.name] = run_backend(backend, plan)
        finally:
            backend.close()
    postgres = results.get("postgres", {}).get("server_version")
    info = machine(postgres)
    settings = {**asdict(plan), "seconds": round(time.perf_counter() - started, 1)}
    if args.json:
        print(json.dumps({"machine": info, "plan": settings, "results": results}, indent=2))
    else:
        render(header_lines(info, settings), tables(results, plan))
        print("\n".join(summary(results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
