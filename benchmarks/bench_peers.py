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
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, replace
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
    items, size = _steps(workload, plan)
    for index in range(plan.rounds + 1):  # round 0 warms up
        for side in sides.values():
            side.call("prepare", workload=workload, index=index)
        seconds = dict.fromkeys(names, 0.0)
        units = dict.fromkeys(names, 0)
        # Within a round the sides take turns step by step, who goes first
        # rotating, so that a slow second of the shared disk hits both.
        for j, start in enumerate(range(0, items, size)):
            for name in turns(names, index + j):
                answer = sides[name].call("step", workload=workload, start=start, stop=start + size)
                seconds[name] += answer["seconds"]
                units[name] += answer["units"]
        answers = {name: sides[name].call("check", workload=workload) for name in names}
        check = _same(workload, index, answers, units)
        if index:
            checks.append(check)
            for name in names:
                samples[name].append(units[name] / seconds[name])
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


def _steps(workload: str, plan: StorePlan) -> tuple[int, int]:
    """Items of work in a round (saves or gets), and how many make one step."""
    if workload == "single":
        return plan.single_saves, 10
    if workload == "bulk":
        return plan.bulk_saves, 1
    if workload == "replay":
        return plan.replays, 1
    return plan.snapshot_gets, 10


def _same(
    workload: str, index: int, answers: dict[str, dict[str, Any]], units: dict[str, int]
) -> dict[str, Any]:
    """Both sides did as much, loaded the same state and stored as many events, or stop."""
    ours, theirs = answers["eventsource"], answers["eventsourcing"]
    if units["eventsource"] != units["eventsourcing"]:
        raise SystemExit(f"{workload} round {index}: the sides did different amounts of work")
    for key in ("state", "stored"):
        if ours[key] != theirs[key]:
            raise SystemExit(
                f"{workload} round {index}: the sides differ in {key}:"
                f" eventsource {ours[key]!r}, eventsourcing {theirs[key]!r}"
            )
    return {"state": ours["state"], "stored": ours["stored"]}


# -- 2. the Kafka fold ----------------------------------------------------------------------


@dataclass(frozen=True)
class FoldPlan:
    events: int  # in the topic, folded by each contender per round
    keys: int  # distinct keys (view rows)
    rounds: int
    batch: int | None  # the worker's batch size (None: the library's default)


# 9 rounds: on this kind of shared 2-core machine one fold's rate moves by
# a fifth from round to round, and the median of 5 ratios moved by 0.05
# between runs of the same code.
FOLD_DEFAULT = FoldPlan(events=200_000, keys=10_000, rounds=9, batch=None)
FOLD_QUICK = FoldPlan(events=20_000, keys=2_000, rounds=2, batch=None)
FOLD_TARGETS = {"sqlite": 1.3, "postgresql": 1.1, "sqlite-tuned": 1.3, "postgresql-tuned": 1.1}
FOLD_SIDES = ("quix-streams", "sqlite", "postgresql", "sqlite-tuned", "postgresql-tuned")
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"


def fold_part(plan: FoldPlan, args: argparse.Namespace, directory: str) -> dict[str, Any]:
    from benchmarks.bench_projections import Databases, populate
    from eventsource import EventStore
    from eventsource.bus.admin import TopicAdmin
    from eventsource.bus.config import KafkaConfig
    from eventsource.bus.relay import Relay

    if not PEERS_PYTHON.exists():
        raise SystemExit("quix-streams' environment is missing: run `make peers` first")
    kafka = KafkaConfig(args.bootstrap_servers, partitions=6)
    context = f"peerf{uuid.uuid4().hex[:8]}"
    store = EventStore(f"sqlite:///{Path(directory) / 'fold-source.db'}", context=context)
    store.create_schema()
    log(f"fold: saving {plan.events:,} events over {plan.keys:,} accounts, relaying them")
    expected = {k: list(v) for k, v in populate(store, plan).items()}  # type: ignore[arg-type]
    with Relay(store, kafka) as relay:
        relay.run(until_caught_up=True)
    store.close()
    databases = Databases(args.database_url)
    runs = FoldRuns(plan, args.bootstrap_servers, context, directory, expected)
    runs.postgres_url = databases.create("peer_fold")
    try:
        for index in range(plan.rounds):
            for name in turns(FOLD_SIDES, index):
                runs.run(name, index)
    finally:
        databases.close()
        admin = TopicAdmin(kafka)
        # The relay's topics too (the context's `personal_data`), not only the fold's.
        admin.delete([*admin.list_topics(f"{context}."), *runs.changelogs(kafka)])
    return runs.summary()


class FoldRuns:
    """One fold per contender per round, each in a fresh process, checked against `expected`."""

    def __init__(
        self,
        plan: FoldPlan,
        bootstrap: str,
        context: str,
        directory: str,
        expected: dict[str, list[int]],
    ) -> None:
        self.plan, self.bootstrap, self.context = plan, bootstrap, context
        self.directory, self.expected = Path(directory), expected
        self.postgres_url = ""
        self.groups: list[str] = []
        self.samples: dict[str, dict[str, list[float]]] = {
            name: {"after_startup": [], "start_to_finish": [], "peak_rss_mib": []}
            for name in FOLD_SIDES
        }

    def run(self, name: str, index: int) -> None:
        if name == "quix-streams":
            answer, folded = self._quix(index)
        else:
            url = self._fresh_view(name, index)
            tuned = ["--tuned"] if name.endswith("-tuned") else []
            answer = _json_run(
                [
                    *python_module("benchmarks.peer_fold"),
                    f"--context={self.context}",
                    f"--url={url}",
                    f"--bootstrap-servers={self.bootstrap}",
                    *([f"--batch={self.plan.batch}"] if self.plan.batch else []),
                    *tuned,
                ]
            )
            folded = _read_view(url)
        if folded != self.expected:
            missing = sorted(set(self.expected) ^ set(folded))[:3]
            wrong = [k for k in self.expected if k in folded and folded[k] != self.expected[k]]
            raise SystemExit(
                f"fold round {index}: {name}'s state differs from the events' fold:"
                f" {len(folded)} keys against {len(self.expected)} (e.g. {missing}),"
                f" {len(wrong)} other values (e.g. {wrong[:3]})"
            )
        own = self.samples[name]
        own["after_startup"].append(self.plan.events / answer["after_startup_s"])
        own["start_to_finish"].append(self.plan.events / answer["total_s"])
        own["peak_rss_mib"].append(answer["peak_rss_mib"])
        log(f"fold round {index}: {name} {own['after_startup'][-1]:,.0f} events/s after start-up")

    def _quix(self, index: int) -> tuple[dict[str, Any], dict[str, list[int]]]:
        group = f"peer-quix-{uuid.uuid4().hex[:12]}"
        self.groups.append(group)
        answer = _json_run(
            [
                str(PEERS_PYTHON),
                str(ROOT / "benchmarks" / "peers" / "quix_fold.py"),
                f"--topic={self.context}.account",
                f"--events={self.plan.events}",
                f"--bootstrap-servers={self.bootstrap}",
                f"--group={group}",
                f"--state-dir={self.directory / f'quix-{index}'}",
            ]
        )
        return answer, answer.pop("folded")

    def _fresh_view(self, name: str, index: int) -> str:
        if name.startswith("sqlite"):
            return f"sqlite:///{self.directory / f'fold-view-{name}-{index}.db'}"
        import sqlalchemy as sa

        engine = sa.create_engine(self.postgres_url, poolclass=sa.NullPool)
        with engine.begin() as conn:
            existing = [
                t
                for t in ("bench_totals", "projection_positions", "projections")
                if sa.inspect(conn).has_table(t)
            ]
            if existing:  # TRUNCATE: DELETE would leave dead rows to the next round
                conn.exec_driver_sql(f"TRUNCATE {', '.join(existing)}")
        engine.dispose()
        return self.postgres_url

    def changelogs(self, kafka: Any) -> list[str]:
        from confluent_kafka.admin import AdminClient

        topics = AdminClient({"bootstrap.servers": kafka.bootstrap_servers}).list_topics(timeout=10)
        return [t for t in topics.topics if any(group in t for group in self.groups)]

    def summary(self) -> dict[str, Any]:
        quix = self.samples["quix-streams"]
        out: dict[str, Any] = {
            "events": self.plan.events,
            "unit": "events/s",
            "samples": self.samples,
            "rates": {
                name: {measure: spread(values) for measure, values in own.items()}
                for name, own in self.samples.items()
            },
        }
        for name, target in FOLD_TARGETS.items():
            own = self.samples[name]
            out[name] = {
                "after_startup": paired(own["after_startup"], quix["after_startup"]),
                "start_to_finish": paired(own["start_to_finish"], quix["start_to_finish"]),
                "target": target,
            }
            out[name]["met"] = all(
                out[name][measure]["median"] >= target
                for measure in ("after_startup", "start_to_finish")
            )
        return out


def _json_run(command: list[str]) -> dict[str, Any]:
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} {command[1]} failed:\n{done.stderr[-3000:]}")
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def _read_view(url: str) -> dict[str, list[int]]:
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT account, events, total FROM bench_totals").all()
    engine.dispose()
    return {str(r[0]): [int(r[1]), int(r[2])] for r in rows}


# -- results ---------------------------------------------------------------------------


_OURS = ("eventsource", "eventsourcing", "sqlalchemy", "pydantic", "confluent-kafka", "orjson")
_THEIRS = ("quixstreams", "confluent-kafka", "pydantic", "rocksdict")


def versions() -> dict[str, dict[str, str]]:
    """The libraries of this environment and of quix-streams' own."""
    ours = {}
    for name in _OURS:
        try:
            ours[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            ours[name] = "-"
    theirs: dict[str, str] = {}
    if PEERS_PYTHON.exists():
        script = (
            "import importlib.metadata as m, json;"
            f"print(json.dumps({{n: m.version(n) for n in {list(_THEIRS)!r}}}))"
        )
        command = [str(PEERS_PYTHON), "-c", script]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        theirs = json.loads(done.stdout) if done.returncode == 0 else {}
    return {".venv": ours, ".venv-peers": theirs}


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


def fold_table(results: dict[str, Any], plan: FoldPlan) -> Table:
    table = Table(
        title=f"2. Kafka fold, {plan.events:,} events, 6 partitions, {plan.keys:,} keys"
        f" ({plan.rounds} paired rounds, events/s)",
        columns=[
            "contender",
            "after start-up",
            "ratio",
            "min - max",
            "start to finish",
            "ratio",
            "min - max",
            "target",
            "met",
            "RSS MiB",
        ],
    )
    rates = results["rates"]
    for name in FOLD_SIDES:
        own = rates[name]
        row = [name, rate(own["after_startup"]["median"])]
        if name == "quix-streams":
            row += ["", "", rate(own["start_to_finish"]["median"]), "", "", "", ""]
        else:
            r = results[name]
            a, s = r["after_startup"], r["start_to_finish"]
            row += [
                ratio(a["median"]),
                f"{ratio(a['min'])} - {ratio(a['max'])}",
                rate(own["start_to_finish"]["median"]),
                ratio(s["median"]),
                f"{ratio(s['min'])} - {ratio(s['max'])}",
                f">= {r['target']}",
                "yes" if r["met"] else "NO",
            ]
        row.append(f"{own['peak_rss_mib']['median']:.0f}")
        table.rows.append(row)
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
    fold_plan = FOLD_QUICK if args.quick else FOLD_DEFAULT
    if args.rounds:
        store_plan = replace(store_plan, rounds=args.rounds)
        fold_plan = replace(fold_plan, rounds=args.rounds)
    if args.part != "store" and not args.database_url.startswith("postgres"):
        raise SystemExit(
            "the fold needs PostgreSQL: pass --database-url or run"
            ' `eval "$(bash scripts/services.sh env)"` first (or use --part store)'
        )
    started = time.perf_counter()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="eventsource-peers-", dir=args.sqlite_dir) as directory:
        if args.part in ("store", "all"):
            results["store"] = store_part(store_plan, directory)
        if args.part in ("fold", "all"):
            results["fold"] = fold_part(fold_plan, args, directory)
    run = {
        "machine": machine(None),
        "versions": versions(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "plan": {"store": asdict(store_plan), "fold": asdict(fold_plan)},
        "seconds": round(time.perf_counter() - started, 1),
        "results": results,
    }
    tables = []
    if "store" in results:
        tables.append(store_table(results["store"], store_plan.rounds))
    if "fold" in results:
        tables.append(fold_table(results["fold"], fold_plan))
    render(
        [
            f"machine     {run['machine']['cpu']}, {run['machine']['cores']} cores,"
            f" {run['machine']['os']}, SQLite {run['machine']['sqlite']}",
            *(
                f"{env:<11} " + ", ".join(f"{k} {v}" for k, v in libs.items())
                for env, libs in run["versions"].items()
            ),
        ],
        tables,
    )
    if not args.no_save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")
        print(f"saved {args.save}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
