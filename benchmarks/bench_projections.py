"""Projection benchmarks: the Kafka worker against a hand-written loop, and live lag.

    .venv/bin/python -m benchmarks.bench_projections [--events N] [--quick] [--json]
                                                     [--bootstrap-servers HOST:PORT]
                                                     [--database-url URL]

Two benchmarks (see benchmarks/README.md):

1. fold: a `Worker` running a projection that reads a counter-and-sum row
   and upserts it for every event (`view.get` + `view.upsert`), from a Kafka
   topic of 6 partitions into PostgreSQL, against a hand-written loop doing
   the same work with the same batch size: a raw confluent-kafka consumer
   (`read_committed`), `orjson.loads` of each value, a dict fold per batch,
   one `executemany` upsert of the rows plus one of the position rows, one
   transaction per batch. Each contender folds the whole topic into its own
   database, from empty tables; the runs alternate and the rate is the median.
2. live lag: a producer saves one event every 1/rate seconds while a worker
   runs (embedded: the SQL log of a SQLite store into SQLite views; Kafka: a
   PostgreSQL store, the relay running, into PostgreSQL views). The time from
   the save's commit to the moment a reader sees the row in the view is
   reported as median, p99 and max.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import orjson
import psycopg
import sqlalchemy as sa
from confluent_kafka import Consumer, KafkaError
from sqlalchemy import Column, Integer, MetaData, Table, select
from sqlalchemy.engine import make_url

from benchmarks.accounts import Deposited, totals, totals_projection
from benchmarks.report import Table as ReportTable
from benchmarks.report import (
    cli_tuning,
    elapsed,
    header_lines,
    log,
    machine,
    percentile,
    quiet_gc,
    rate,
    ratio,
    render,
    verdict,
)
from eventsource import (
    Aggregate,
    Event,
    EventStore,
    Projection,
    Repository,
    View,
    Worker,
    handles,
    on,
)
from eventsource.bus.admin import TopicAdmin
from eventsource.bus.config import KafkaConfig
from eventsource.bus.kafka import KafkaLogConsumer
from eventsource.bus.relay import Relay
from eventsource.bus.sqllog import SqlLogConsumer
from eventsource.store.engine import create_engine

TARGET = 0.6
PARTITIONS = 6


@dataclass(frozen=True)
class Plan:
    events: int  # in the topic, folded by each contender per run
    keys: int  # distinct aggregates (view rows)
    runs: int  # timed runs of each contender
    batch: int  # messages per batch (worker and hand-written loop)
    lag_rate: int  # events per second saved during the lag benchmark
    lag_seconds: float  # how long the producer runs


DEFAULT = Plan(events=200_000, keys=10_000, runs=3, batch=1000, lag_rate=500, lag_seconds=10)
QUICK = Plan(events=20_000, keys=2_000, runs=1, batch=1000, lag_rate=500, lag_seconds=3)


# -- the model ----------------------------------------------------------------------


class BenchMark(Event):
    """One event of the lag benchmark; `seq` numbers them in saving order."""

    event_type = "bench_projections.mark"

    seq: int


class BenchAccount(Aggregate, type_name="account"):
    total: int = 0

    @on(Deposited)
    def _deposited(self, event: Deposited) -> None:
        self.total += event.amount

    @on(BenchMark)
    def _marked(self, event: BenchMark) -> None:
        pass


marks = Table("bench_marks", MetaData(), Column("seq", Integer, primary_key=True))


def marks_projection(context: str) -> type[Projection]:
    class BenchMarks(Projection):
        name = "bench_marks"
        topics = [f"{context}.account"]
        rows = marks

        @handles(BenchMark)
        def _marked(self, event: BenchMark, view: View) -> None:
            view.upsert(self.rows, seq=event.seq)

    return BenchMarks


# -- databases and topics --------------------------------------------------------------


class Databases:
    """Throwaway PostgreSQL databases on the server, dropped on close."""

    def __init__(self, admin_url: str) -> None:
        self.admin = sa.create_engine(
            make_url(admin_url).set(drivername="postgresql+psycopg"),
            isolation_level="AUTOCOMMIT",
            poolclass=sa.NullPool,
        )
        self.tag = f"es_bench_proj_{time.strftime('%Y%m%d%H%M%S')}_{uuid.uuid4().hex[:6]}"
        self.created: list[str] = []
        with self.admin.connect() as conn:
            version = str(conn.exec_driver_sql("SHOW server_version").scalar_one())
        self.server_version = version.split(maxsplit=1)[0]

    def create(self, name: str) -> str:
        database = f"{self.tag}_{name}"
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{database}"')
        self.created.append(database)
        return self.admin.url.set(database=database).render_as_string(hide_password=False)

    def close(self) -> None:
        with self.admin.connect() as conn:
            for database in self.created:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        self.admin.dispose()


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def populate(store: EventStore, plan: Plan, seed: int = 1) -> dict[str, tuple[int, int]]:
    """Save `plan.events` deposits over `plan.keys` accounts; return the expected fold."""
    rng = random.Random(seed)
    repo = Repository(store, BenchAccount)
    accounts = [BenchAccount(f"acct-{i:05d}") for i in range(plan.keys)]
    expected: dict[str, tuple[int, int]] = {}
    touched: dict[str, BenchAccount] = {}
    for n in range(plan.events):
        account = rng.choice(accounts)
        amount = rng.randint(1, 1000)
        account.trigger(Deposited(amount=amount))
        events, total = expected.get(account.id, (0, 0))
        expected[account.id] = (events + 1, total + amount)
        touched[account.id] = account
        if len(touched) >= 2000 or n == plan.events - 1:
            repo.save(*touched.values())
            touched.clear()
    return expected


# -- 1. folding a Kafka topic into PostgreSQL -------------------------------------------


POSITIONS_DDL = """
CREATE TABLE IF NOT EXISTS baseline_positions (
    projection varchar(200), topic varchar(250), partition integer,
    "offset" bigint NOT NULL, PRIMARY KEY (projection, topic, partition))
"""
UPSERT_TOTALS = (
    "INSERT INTO bench_totals (account, events, total) VALUES (%s, %s, %s)"
    " ON CONFLICT (account) DO UPDATE SET events = bench_totals.events + excluded.events,"
    " total = bench_totals.total + excluded.total"
)
UPSERT_POSITIONS = (
    'INSERT INTO baseline_positions (projection, topic, partition, "offset")'
    " VALUES (%s, %s, %s, %s) ON CONFLICT (projection, topic, partition)"
    ' DO UPDATE SET "offset" = excluded."offset"'
)


def framework_fold(kafka: KafkaConfig, context: str, url: str, batch: int) -> float:
    """Seconds for a fresh `Worker` to fold the whole topic (tables emptied first)."""
    engine = create_engine(url)
    cls = totals_projection(context)
    with engine.begin() as conn:
        totals.create(conn, checkfirst=True)
        # TRUNCATE, as the baseline does: DELETE would leave the next run dead
        # rows and index entries to wade through.
        existing = [
            t for t in ("projection_positions", "projections") if sa.inspect(conn).has_table(t)
        ]
        conn.exec_driver_sql(f"TRUNCATE {', '.join([totals.name, *existing])}")
    consumer = KafkaLogConsumer(kafka, group_id=f"bench-{uuid.uuid4().hex[:12]}")
    worker = Worker(cls(), consumer, engine=engine, batch_size=batch)
    with quiet_gc(), cli_tuning() as tuning:
        started = time.perf_counter()
        worker.run(
            until_caught_up=True,
            on_batch=None if tuning is None else lambda _w, _s: tuning.batch_done(),
        )
        elapsed = time.perf_counter() - started
    worker.close()
    engine.dispose()
    return elapsed


def baseline_fold(kafka: KafkaConfig, topic: str, url: str, batch: int) -> float:
    """Seconds for the hand-written loop to fold the whole topic (tables emptied first)."""
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_totals (account varchar(100) PRIMARY KEY,"
            " events integer NOT NULL, total bigint NOT NULL)"
        )
        conn.execute(POSITIONS_DDL)
        conn.execute("TRUNCATE bench_totals, baseline_positions")
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": f"bench-baseline-{uuid.uuid4().hex[:12]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 100,
        }
    )
    conn = psycopg.connect(libpq(url))
    assigned: set[int] = set()
    at_end: set[int] = set()

    def on_assign(c: Consumer, partitions: list[Any]) -> None:
        assigned.update(p.partition for p in partitions)

    with quiet_gc():
        started = time.perf_counter()
        consumer.subscribe([topic], on_assign=on_assign)
        while not assigned or at_end != assigned:
            messages = consumer.consume(batch, 0.2)
            folded: dict[bytes, list[int]] = {}
            offsets: dict[int, int] = {}
            for m in messages:
                error = m.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_end.add(m.partition())  # type: ignore[arg-type]
                    continue
                at_end.discard(m.partition())  # type: ignore[arg-type]
                amount = orjson.loads(m.value())["amount"]  # type: ignore[arg-type]
                row = folded.get(m.key())  # type: ignore[arg-type]
                if row is None:
                    folded[m.key()] = [1, amount]  # type: ignore[index]
                else:
                    row[0] += 1
                    row[1] += amount
                offsets[m.partition()] = m.offset() + 1  # type: ignore[index,operator]
            if not folded:
                continue
            with conn.cursor() as cur:
                cur.executemany(
                    UPSERT_TOTALS, [(k.decode(), n, total) for k, (n, total) in folded.items()]
                )
                cur.executemany(
                    UPSERT_POSITIONS,
                    [("baseline", topic, p, offset) for p, offset in offsets.items()],
                )
            conn.commit()
        elapsed = time.perf_counter() - started
    consumer.close()
    conn.close()
    return elapsed


def read_totals(url: str) -> dict[str, tuple[int, int]]:
    with psycopg.connect(libpq(url)) as conn:
        rows = conn.execute("SELECT account, events, total FROM bench_totals").fetchall()
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


def fold_benchmark(plan: Plan, kafka: KafkaConfig, databases: Databases) -> dict[str, Any]:
    context = f"benchp{uuid.uuid4().hex[:8]}"
    topic = f"{context}.account"
    with tempfile.TemporaryDirectory(prefix="eventsource-bench-") as directory:
        store = EventStore(f"sqlite:///{Path(directory) / 'source.db'}", context=context)
        store.create_schema()
        log(f"fold: saving {plan.events:,} events over {plan.keys:,} accounts")
        expected = populate(store, plan)
        log("fold: relaying them to Kafka")
        with Relay(store, kafka) as relay:
            relay.run(until_caught_up=True)
        store.close()
    urls = {"framework": databases.create("framework"), "baseline": databases.create("baseline")}
    samples: dict[str, list[float]] = {"framework": [], "baseline": []}
    try:
        order = ["framework", "baseline"]
        for run in range(plan.runs):
            for name in order if run % 2 == 0 else list(reversed(order)):
                if name == "framework":
                    seconds = framework_fold(kafka, context, urls[name], plan.batch)
                else:
                    seconds = baseline_fold(kafka, topic, urls[name], plan.batch)
                samples[name].append(seconds)
                log(f"fold run {run + 1}: {name} {plan.events / seconds:,.0f} events/s")
                if read_totals(urls[name]) != expected:
                    raise SystemExit(f"the {name}'s view differs from the fold of the events")
    finally:
        admin = TopicAdmin(kafka)
        admin.delete([topic])
    rates = {name: plan.events / statistics.median(s) for name, s in samples.items()}
    return {
        "rates": rates,
        "seconds": samples,
        "ratio": rates["framework"] / rates["baseline"],
    }


# -- 2. live lag -----------------------------------------------------------------------------


class Seen:
    """Polls the view for new `seq` rows and notes when each first appeared."""

    def __init__(self, engine: sa.Engine, count: int, interval: float = 0.002) -> None:
        self.engine = engine
        self.interval = interval
        self.at: dict[int, float] = {}
        self.count = count
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        low = 0
        query = select(marks.c.seq).where(marks.c.seq >= sa.bindparam("low"))
        while not self.stop.is_set() and len(self.at) < self.count:
            try:
                with self.engine.connect() as conn:
                    found = conn.execute(query, {"low": low}).scalars().all()
            except sa.exc.OperationalError:
                found = []  # the table is not there yet
            now = time.perf_counter()
            for seq in found:
                self.at.setdefault(seq, now)
            while low in self.at:
                low += 1
            time.sleep(self.interval)


def lag_run(
    plan: Plan,
    store: EventStore,
    views: sa.Engine,
    make_log: Callable[[], Any],
    relay: Relay | None,
) -> dict[str, Any]:
    count = int(plan.lag_rate * plan.lag_seconds)
    cls = marks_projection(store.context)
    worker = Worker(cls(), make_log(), engine=views)
    worker.start()
    stop = threading.Event()
    threads = [threading.Thread(target=worker.run, kwargs={"stop": stop}, daemon=True)]
    if relay is not None:
        threads.append(threading.Thread(target=relay.run, kwargs={"stop": stop}, daemon=True))
    seen = Seen(views, count)
    for thread in threads:
        thread.start()
    seen.thread.start()
    repo = Repository(store, BenchAccount)
    saved: dict[int, float] = {}
    interval = 1.0 / plan.lag_rate
    started = time.perf_counter()
    for seq in range(count):
        due = started + seq * interval
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        account = BenchAccount(f"mark-{seq}")
        account.trigger(BenchMark(seq=seq))
        repo.save(account)
        saved[seq] = time.perf_counter()
    produced = time.perf_counter() - started
    seen.thread.join(60)
    seen.stop.set()
    stop.set()
    for thread in threads:
        thread.join(30)
    worker.close()
    lags = [seen.at[s] - saved[s] for s in saved if s in seen.at]
    if len(lags) != count:
        raise SystemExit(f"only {len(lags)} of {count} events became visible in the view")
    return {
        "events": count,
        "rate": count / produced,
        "median": statistics.median(lags),
        "p99": percentile(lags, 99),
        "max": max(lags),
    }


def lag_benchmark(plan: Plan, kafka: KafkaConfig, databases: Databases) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="eventsource-bench-") as directory:
        context = f"benchl{uuid.uuid4().hex[:8]}"
        store = EventStore(f"sqlite:///{Path(directory) / 'source.db'}", context=context)
        store.create_schema()
        views = create_engine(f"sqlite:///{Path(directory) / 'views.db'}")
        log(f"lag, embedded: {plan.lag_rate} events/s for {plan.lag_seconds} s")
        try:
            results["embedded"] = lag_run(
                plan, store, views, lambda: SqlLogConsumer({context: store}), None
            )
        finally:
            store.close()
            views.dispose()
    context = f"benchl{uuid.uuid4().hex[:8]}"
    store = EventStore(databases.create("lag_source"), context=context)
    store.create_schema()
    views = create_engine(databases.create("lag_views"))
    log(f"lag, Kafka: {plan.lag_rate} events/s for {plan.lag_seconds} s, relay running")
    relay = Relay(store, kafka)
    try:
        relay.start()
        TopicAdmin(kafka).ensure([f"{context}.account"])
        results["kafka"] = lag_run(
            plan,
            store,
            views,
            lambda: KafkaLogConsumer(kafka, group_id=f"bench-lag-{uuid.uuid4().hex[:8]}"),
            relay,
        )
    finally:
        relay.close()
        store.close()
        views.dispose()
        TopicAdmin(kafka).delete([f"{context}.account"])
    return results


# -- report ---------------------------------------------------------------------------------


def tables(results: dict[str, Any], plan: Plan) -> list[ReportTable]:
    fold = results["fold"]
    out = [
        ReportTable(
            title=(
                f"1. fold: Kafka ({PARTITIONS} partitions) -> PostgreSQL, {plan.events:,} events,"
                f" {plan.keys:,} rows, batch {plan.batch} (events/s, median of {plan.runs})"
            ),
            columns=["contender", "events/s", "vs baseline", f"target >= {TARGET}"],
            rows=[
                [
                    "framework (Worker)",
                    rate(fold["rates"]["framework"]),
                    ratio(fold["ratio"]),
                    verdict(fold["ratio"] >= TARGET),
                ],
                ["baseline (hand-written)", rate(fold["rates"]["baseline"]), "1.00", "-"],
            ],
        )
    ]
    lag = results["lag"]
    rows = []
    for mode, label in (("embedded", "embedded (SQLite)"), ("kafka", "Kafka + relay (PostgreSQL)")):
        r = lag[mode]
        rows.append(
            [
                label,
                f"{r['rate']:,.0f}",
                f"{r['median'] * 1000:,.1f}",
                f"{r['p99'] * 1000:,.1f}",
                f"{r['max'] * 1000:,.1f}",
            ]
        )
    out.append(
        ReportTable(
            title=(
                f"2. live lag: save -> visible in the view, {plan.lag_rate} events/s for"
                f" {plan.lag_seconds:g} s (ms)"
            ),
            columns=["mode", "events/s", "median", "p99", "max"],
            rows=rows,
            notes=[
                "default worker settings (batch 1000, poll timeout 0.2 s; embedded log polled"
                " every 50 ms; relay polls every 100 ms); a reader polls the view every 2 ms"
            ],
        )
    )
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_projections")
    parser.add_argument("--events", type=int, help="events folded per run (default 200,000)")
    parser.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
    )
    parser.add_argument("--database-url", default=os.environ.get("EVENTSOURCE_DATABASE_URL", ""))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.database_url.startswith("postgres"):
        raise SystemExit(
            "needs a PostgreSQL URL: pass --database-url or run"
            ' `eval "$(bash scripts/services.sh env)"` first'
        )
    plan = QUICK if args.quick else DEFAULT
    if args.events:
        plan = replace(plan, events=args.events)
    kafka = KafkaConfig(args.bootstrap_servers, partitions=PARTITIONS)
    databases = Databases(args.database_url)
    results: dict[str, Any] = {}
    try:
        results["fold"] = fold_benchmark(plan, kafka, databases)
        results["lag"] = lag_benchmark(plan, kafka, databases)
    finally:
        databases.close()
    info = machine(databases.server_version)
    settings = {**asdict(plan), "seconds": round(elapsed(), 1)}
    if args.json:
        print(json.dumps({"machine": info, "plan": settings, "results": results}, indent=2))
    else:
        render(header_lines(info, settings), tables(results, plan))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
