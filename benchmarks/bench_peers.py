"""eventsource against its Python peers, side by side, in paired rounds.

    .venv/bin/python -m benchmarks.bench_peers [--quick] [--part store|fold|all]
                                               [--save PATH | --no-save]

1. store (SQLite, WAL, synchronous=FULL on both sides) against the
   `eventsourcing` library: a single save of a new aggregate with one event;
   bulk saves of 100 aggregates of 10 events; `get` of a 10,000-event stream
   replayed in full; `get` of a 10,099-event stream with snapshots every 100
   (99 events to replay after the latest snapshot, the worst case).
2. fold (needs Kafka and PostgreSQL): 200,000 events on 6 partitions folded
   into a count and a sum per key, against quix-streams (exactly-once, its
   RocksDB state), by eventsource's `Worker` into a SQL view on SQLite and on
   PostgreSQL.

Each contender runs in a process of its own; the driver asks them for one
round at a time, alternating, with the order rotating from round to round.
The ratio of a workload is the median of its per-round ratios, printed with
its spread. Each side's result is checked equal (the same state loaded, the
same number of events stored, the same folded view) before any figure is
printed. See benchmarks/README.md ("Peer benchmark").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.peer_data import STORE_DEFAULT, STORE_QUICK, WORKLOADS, StorePlan
from benchmarks.peer_stats import ROOT, Contender, paired, python_module, spread
from benchmarks.report import Table, log, machine, rate, ratio, render, turns

RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_RESULT = RESULTS / "peers.json"
SEED = 20_260_101

# Targets: eventsource's rate over the peer's, same run.
STORE_TARGETS = {"single": 1.0, "bulk": 1.3, "replay": 3.0, "snapshot": 1.5}
STORE_UNITS = {"single": "saves/s", "bulk": "events/s", "replay": "gets/s", "snapshot": "gets/s"}
STORE_LABELS = {
    "single": "single save: one new aggregate with one event, one transaction each",
    "bulk": "bulk: 100 aggregates of 10 events per save",
    "replay": "get of a 10,000-event stream, no snapshots",
    "snapshot": "get of a 10,099-event stream, snapshots every 100 (99 events after the latest)",
}


# -- 1. the store ----------------------------------------------------------------------


def store_part(plan: StorePlan, directory: str) -> dict[str, Any]:
    sides = {
        name: Contender(name, python_module(f"benchmarks.peer_{name}")).start()
        for name in ("eventsourcing", "eventsource")
    }
    try:
        return {w: store_workload(w, plan, sides, directory) for w in WORKLOADS}
    finally:
        for side in sides.values():
            side.stop()


def store_workload(
    workload: str, plan: StorePlan, sides: dict[str, Contender], directory: str
) -> dict[str, Any]:
    names = tuple(sides)
    for side in sides.values():
        side.call("setup", workload=workload, plan=asdict(plan), seed=SEED, directory=directory)
    samples: dict[str, list[float]] = {name: [] for name in names}
    checks: list[dict[str, Any]] = []
    for index in range(plan.rounds + 1):  # round 0 warms up
        for side in sides.values():
            side.call("prepare", workload=workload, index=index)
        answers = {name: sides[name].call("run", workload=workload) for name in turns(names, index)}
        check = _same(workload, index, answers)
        if index:
            checks.append(check)
            for name, answer in answers.items():
                samples[name].append(answer["units"] / answer["seconds"])
    rss = {name: side.call("finish")["peak_rss_mib"] for name, side in sides.items()}
    per_round = paired(samples["eventsource"], samples["eventsourcing"])
    log(
        f"store {workload}: eventsource/eventsourcing {per_round['median']:.2f}"
        f" ({per_round['min']:.2f} - {per_round['max']:.2f})"
    )
    return {
        "unit": STORE_UNITS[workload],
        "samples": samples,
        "rates": {name: spread(values) for name, values in samples.items()},
        "ratio": per_round,
        "target": STORE_TARGETS[workload],
        "met": per_round["median"] >= STORE_TARGETS[workload],
        "peak_rss_mib": rss,
        "checked": checks[-1],
    }


def _same(workload: str, index: int, answers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Both sides loaded the same state and stored as many events, or stop."""
    ours, theirs = answers["eventsource"], answers["eventsourcing"]
    for key in ("state", "stored", "units"):
        if ours[key] != theirs[key]:
            raise SystemExit(
                f"{workload} round {index}: the sides differ in {key}:"
                f" eventsource {ours[key]!r}, eventsourcing {theirs[key]!r}"
            )
    return {"state": ours["state"], "stored": ours["stored"]}


# -- results ---------------------------------------------------------------------------


def versions() -> dict[str, str]:
    found = {}
    for name in ("eventsourcing", "quixstreams", "confluent-kafka", "sqlalchemy", "pydantic"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "-"
    return found


def store_table(results: dict[str, Any], rounds: int) -> Table:
    table = Table(
        title=f"1. store, SQLite WAL synchronous=FULL on both sides ({rounds} paired rounds)",
        columns=[
            "workload",
            "eventsourcing",
            "eventsource",
            "ratio",
            "min - max",
            "target",
            "met",
            "RSS MiB (peer / ours)",
        ],
    )
    for workload, r in results.items():
        rates = r["rates"]
        table.rows.append(
            [
                f"{workload} ({r['unit']})",
                rate(rates["eventsourcing"]["median"]),
                rate(rates["eventsource"]["median"]),
                ratio(r["ratio"]["median"]),
                f"{ratio(r['ratio']['min'])} - {ratio(r['ratio']['max'])}",
                f">= {r['target']}",
                "yes" if r["met"] else "NO",
                "{eventsourcing:.0f} / {eventsource:.0f}".format(**r["peak_rss_mib"]),
            ]
        )
    table.notes.append(
        "rates: medians of the rounds; ratio: median of the per-round ratios"
        " eventsource/eventsourcing; RSS: each process's peak during the workload"
    )
    return table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_peers", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--part", choices=["store", "fold", "all"], default="all")
    parser.add_argument("--quick", action="store_true", help="a smaller run")
    parser.add_argument("--rounds", type=int, help="timed rounds per workload")
    parser.add_argument("--save", type=Path, default=DEFAULT_RESULT, help="where the JSON goes")
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument("--sqlite-dir", help="where the SQLite files go (default: the temp dir)")
    parser.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
    )
    parser.add_argument("--database-url", default=os.environ.get("EVENTSOURCE_DATABASE_URL", ""))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    store_plan = STORE_QUICK if args.quick else STORE_DEFAULT
    if args.rounds:
        store_plan = replace(store_plan, rounds=args.rounds)
    started = time.perf_counter()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="eventsource-peers-", dir=args.sqlite_dir) as directory:
        if args.part in ("store", "all"):
            results["store"] = store_part(store_plan, directory)
    run = {
        "machine": machine(None),
        "versions": versions(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "plan": {"store": asdict(store_plan)},
        "seconds": round(time.perf_counter() - started, 1),
        "results": results,
    }
    tables = []
    if "store" in results:
        tables.append(store_table(results["store"], store_plan.rounds))
    render([f"peers: {run['versions']}"], tables)
    if not args.no_save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")
        print(f"saved {args.save}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
