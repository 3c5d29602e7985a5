"""Rebuild benchmark: `rebuild()` from offset zero against a hand-written loop.

    .venv/bin/python -m benchmarks.bench_rebuild [--events N] [--keys K]
        [--backend embedded-sqlite|kafka-postgres|all] [--quick] [--json]
        [--database-url URL] [--bootstrap-servers HOST:PORT]

A projection keeps a count and a sum per key (`view.get` + `view.upsert` for
every event); 1,000,000 events over 10,000 keys are rebuilt into its view
(see benchmarks/README.md):

* embedded-sqlite: the SQL log of a SQLite store into SQLite views;
* kafka-postgres: a topic of 6 partitions (relayed once, before timing) into
  PostgreSQL views.

The hand-written loop does the same work in the same run: a raw read of the
same source (a `sqlite3` cursor over the events table; a raw confluent-kafka
`read_committed` consumer), `orjson.loads` of each payload, a plain dict fold,
one `executemany` upsert of the batch's rows plus its positions, one
transaction per batch. Peak memory (maxrss of a fresh process) of a rebuild of
a quarter of the events and of all of them shows whether it grows with them.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import sqlalchemy as sa
from confluent_kafka import Consumer, KafkaError
from sqlalchemy.engine import make_url

from benchmarks.accounts import AGGREGATE, Deposited, totals_projection
from benchmarks.report import Table as ReportTable
from benchmarks.report import (
    cli_tuning,
    header_lines,
    log,
    machine,
    quiet_gc,
    rate,
    ratio,
    render,
    verdict,
)
from eventsource import EventStore, StoredEvent
from eventsource.bus.config import KafkaConfig
from eventsource.bus.kafka import KafkaLogConsumer
from eventsource.bus.relay import Relay
from eventsource.bus.sqllog import SqlLogConsumer
from eventsource.projections.rebuild import rebuild
from eventsource.store.engine import create_engine

TARGET_RATIO = 0.6
TARGET_SQLITE_SECONDS = 10.0  # for 1,000,000 events
PARTITIONS = 6
BACKENDS = ("embedded-sqlite", "kafka-postgres")


@dataclass(frozen=True)
class Plan:
    events: int  # in the log, rebuilt by each contender per run
    keys: int  # distinct aggregates: rows of the view
    runs: int  # timed runs of each contender (they alternate)
    batch: int  # events per transaction, both contenders
    memory_small: int  # events of the smaller memory probe (the larger one is `events`)


DEFAULT = Plan(events=1_000_000, keys=10_000, runs=3, batch=5000, memory_small=250_000)
QUICK = Plan(events=100_000, keys=1_000, runs=1, batch=5000, memory_small=25_000)


# -- the model ------------------------------------------------------------------------


def populate(store: EventStore, events: int, keys: int) -> dict[str, tuple[int, int]]:
    """Append `events` deposits over `keys` accounts, interleaved; return the expected view.

    Records are built already encoded and appended 20,000 at a time with
    `append_records` (the store's own insert), which is fast and untimed.
    """
    expected: dict[str, list[int]] = {}
    started = datetime(2024, 1, 1, tzinfo=UTC)
    batch: list[StoredEvent] = []
    for n in range(events):
        key = f"acct-{n % keys:06d}"
        amount = (n * 7919) % 1000 + 1
        row = expected.setdefault(key, [0, 0])
        row[0] += 1
        row[1] += amount
        batch.append(
            StoredEvent(
                position=0,
                stream_id=f"{AGGREGATE}:{key}",
                aggregate_id=key,
                aggregate_type=AGGREGATE,
                version=row[0],
                event_type=Deposited.event_type,
                schema_version=1,
                event_id=uuid.uuid4(),
                occurred_at=started + timedelta(milliseconds=n),
                payload=orjson.dumps({"amount": amount}).decode(),
                metadata="{}",
            )
        )
        if len(batch) == 20_000 or n == events - 1:
            store.append_records(batch)
            batch = []
    return {k: (v[0], v[1]) for k, v in expected.items()}


# -- the framework --------------------------------------------------------------------


def framework_sqlite(context: str, source_url: str, views_url: str, batch: int) -> float:
    """Seconds for `rebuild()` of the whole SQL log into the SQLite views."""
    store = EventStore(source_url, context=context)
    views = create_engine(views_url)
    cls = totals_projection(context)
    try:
        with quiet_gc(), cli_tuning() as tuning:
            started = time.perf_counter()
            rebuild(
                cls,
                SqlLogConsumer({context: store}),
                engine=views,
                batch_size=batch,
                on_batch=tuning and tuning.batch_done,
            )
            return time.perf_counter() - started
    finally:
        store.close()
        views.dispose()


def framework_kafka(context: str, kafka: KafkaConfig, views_url: str, batch: int) -> float:
    """Seconds for `rebuild()` of the whole topic into the PostgreSQL views."""
    views = create_engine(views_url)
    cls = totals_projection(context)
    consumer = KafkaLogConsumer(kafka, group_id=f"bench-rebuild-{uuid.uuid4().hex[:12]}")
    try:
        with quiet_gc(), cli_tuning() as tuning:
            started = time.perf_counter()
            rebuild(
                cls, consumer, engine=views, batch_size=batch, on_batch=tuning and tuning.batch_done
            )
            return time.perf_counter() - started
    finally:
        consumer.close()
        views.dispose()


# -- the hand-written loops -------------------------------------------------------------

SQLITE_UPSERT = (
    "INSERT INTO base_totals (account, events, total) VALUES (?, ?, ?)"
    " ON CONFLICT (account) DO UPDATE SET events = excluded.events, total = excluded.total"
)
PG_UPSERT = (
    "INSERT INTO base_totals (account, events, total) VALUES (%s, %s, %s)"
    " ON CONFLICT (account) DO UPDATE SET events = excluded.events, total = excluded.total"
)
PG_POSITIONS = (
    "INSERT INTO base_positions (topic, partition, next_offset, last_position)"
    " VALUES (%s, %s, %s, %s) ON CONFLICT (topic, partition) DO UPDATE"
    " SET next_offset = excluded.next_offset, last_position = excluded.last_position"
)


def baseline_sqlite(source_path: Path, views_path: Path, topic: str, batch: int) -> float:
    """Seconds for a raw sqlite3 loop to fold the whole log into fresh tables."""
    source = sqlite3.connect(source_path)
    views = sqlite3.connect(views_path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=30000"):
        views.execute(f"PRAGMA {pragma}")
    views.execute("DROP TABLE IF EXISTS base_totals")
    views.execute("DROP TABLE IF EXISTS base_positions")
    views.execute(
        "CREATE TABLE base_totals (account VARCHAR(100) PRIMARY KEY, events BIGINT NOT NULL,"
        " total BIGINT NOT NULL)"
    )
    views.execute(
        "CREATE TABLE base_positions (topic VARCHAR(250), partition INTEGER,"
        " next_offset BIGINT NOT NULL, last_position BIGINT NOT NULL,"
        " PRIMARY KEY (topic, partition))"
    )
    views.execute("INSERT INTO base_positions VALUES (?, 0, 0, 0)", (topic,))
    read = (
        "SELECT global_position, aggregate_id, event_type, payload FROM events"
        " WHERE aggregate_type = ? AND global_position > ? ORDER BY global_position LIMIT ?"
    )
    wanted = Deposited.event_type
    state: dict[str, list[int]] = {}
    after = 0
    with quiet_gc():
        started = time.perf_counter()
        while True:
            rows = source.execute(read, (AGGREGATE, after, batch)).fetchall()
            if not rows:
                break
            changed: dict[str, list[int]] = {}
            for _position, key, event_type, payload in rows:
                if event_type != wanted:
                    continue
                amount = orjson.loads(payload)["amount"]
                row = state.get(key)
                if row is None:
                    row = state[key] = [0, 0]
                row[0] += 1
                row[1] += amount
                changed[key] = row
            after = rows[-1][0]
            views.execute("BEGIN IMMEDIATE")
            views.executemany(SQLITE_UPSERT, [(k, r[0], r[1]) for k, r in changed.items()])
            views.execute(
                "UPDATE base_positions SET next_offset = ?, last_position = ?"
                " WHERE topic = ? AND partition = 0",
                (after + 1, after, topic),
            )
            views.execute("COMMIT")
        elapsed = time.perf_counter() - started
    source.close()
    views.close()
    return elapsed


def baseline_kafka(kafka: KafkaConfig, topic: str, views_url: str, batch: int) -> float:
    """Seconds for a raw confluent-kafka + psycopg loop to fold the whole topic."""
    with psycopg.connect(libpq(views_url), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS base_totals, base_positions")
        conn.execute(
            "CREATE TABLE base_totals (account varchar(100) PRIMARY KEY, events bigint NOT NULL,"
            " total bigint NOT NULL)"
        )
        conn.execute(
            "CREATE TABLE base_positions (topic varchar(250), partition integer,"
            " next_offset bigint NOT NULL, last_position bigint NOT NULL,"
            " PRIMARY KEY (topic, partition))"
        )
    # The same librdkafka settings as the framework's consumer (read_committed, EOF events).
    consumer = Consumer(kafka.consumer(f"bench-rebuild-base-{uuid.uuid4().hex[:12]}"))
    conn = psycopg.connect(libpq(views_url))
    assigned: set[int] = set()
    at_end: set[int] = set()
    state: dict[bytes, list[int]] = {}

    def on_assign(_consumer: Consumer, partitions: list[Any]) -> None:
        assigned.update(p.partition for p in partitions)

    with quiet_gc():
        started = time.perf_counter()
        consumer.subscribe([topic], on_assign=on_assign)
        while not assigned or at_end != assigned:
            messages = consumer.consume(batch, 0.1)
            changed: dict[bytes, list[int]] = {}
            moved: dict[int, tuple[int, int]] = {}
            for m in messages:
                error = m.error()
                partition: int = m.partition()  # type: ignore[assignment]
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_end.add(partition)
                    continue
                at_end.discard(partition)
                key: bytes = m.key()  # type: ignore[assignment]
                amount = orjson.loads(m.value())["amount"]  # type: ignore[arg-type]
                row = state.get(key)
                if row is None:
                    row = state[key] = [0, 0]
                row[0] += 1
                row[1] += amount
                changed[key] = row
                headers = dict(m.headers() or ())
                moved[partition] = (m.offset() + 1, int(headers["es-position"]))  # type: ignore[operator]
            if not changed:
                continue
            with conn.cursor() as cur:
                cur.executemany(PG_UPSERT, [(k.decode(), r[0], r[1]) for k, r in changed.items()])
                cur.executemany(
                    PG_POSITIONS, [(topic, p, o, last) for p, (o, last) in moved.items()]
                )
            conn.commit()
        elapsed = time.perf_counter() - started
    consumer.close()
    conn.close()
    return elapsed


# -- checks -------------------------------------------------------------------------------


def read_view(engine_url: str, table: str) -> dict[str, tuple[int, int]]:
    engine = sa.create_engine(engine_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT account, events, total FROM {table}")).all()
    finally:
        engine.dispose()
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# -- memory -------------------------------------------------------------------------------


def memory_probe(backend: str, source: str, views: str, context: str, batch: int) -> dict[str, Any]:
    """Run one rebuild in a fresh process; its maxrss before and after (KiB)."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.bench_rebuild",
        "--probe",
        backend,
        "--probe-source",
        source,
        "--probe-views",
        views,
        "--probe-context",
        context,
        "--batch",
        str(batch),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=900)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _rss_kib(field: str) -> int:
    """A size from /proc/self/status (Linux), else the peak from getrusage."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_peak() -> None:
    """Start the peak (VmHWM) over from the current size, so that it measures the rebuild."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
    except OSError:
        pass


def run_probe(args: argparse.Namespace) -> int:
    """The child side of `memory_probe`: print one JSON line."""
    cls = totals_projection(args.probe_context)
    views = create_engine(args.probe_views)
    consumer: Any
    if args.probe == "embedded-sqlite":
        store = EventStore(args.probe_source, context=args.probe_context)
        consumer = SqlLogConsumer({args.probe_context: store})
    else:
        kafka = KafkaConfig(args.probe_source, partitions=PARTITIONS)
        consumer = KafkaLogConsumer(kafka, group_id=f"bench-probe-{uuid.uuid4().hex[:12]}")
    gc.collect()
    before = _rss_kib("VmRSS")
    _reset_peak()
    started = time.perf_counter()
    applied = rebuild(cls, consumer, engine=views, batch_size=args.batch)
    seconds = time.perf_counter() - started
    peak = _rss_kib("VmHWM")
    consumer.close()
    print(json.dumps({"events": applied, "before_kib": before, "peak_kib": peak, "s": seconds}))
    return 0


# -- the runs ---------------------------------------------------------------------------------


def alternate(plan: Plan, framework: Any, baseline: Any) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"framework": [], "baseline": []}
    for run in range(plan.runs):
        order = [("framework", framework), ("baseline", baseline)]
        for name, contender in order if run % 2 == 0 else reversed(order):
            seconds = contender()
            samples[name].append(seconds)
            log(f"  {name}: {plan.events / seconds:,.0f} events/s ({seconds:.2f} s)")
    return samples


def summarise(plan: Plan, samples: dict[str, list[float]]) -> dict[str, Any]:
    seconds = {k: statistics.median(v) for k, v in samples.items()}
    rates = {k: plan.events / s for k, s in seconds.items()}
    return {
        "samples_s": samples,
        "seconds": seconds,
        "events_per_s": rates,
        "ratio": rates["framework"] / rates["baseline"],
    }


def bench_sqlite(plan: Plan, directory: Path) -> dict[str, Any]:
    context = f"benchrb{uuid.uuid4().hex[:8]}"
    topic = f"{context}.{AGGREGATE}"
    source_path, views_path = directory / "source.db", directory / "views.db"
    source_url, views_url = f"sqlite:///{source_path}", f"sqlite:///{views_path}"
    with EventStore(source_url, context=context, sqlite_synchronous="OFF") as store:
        store.create_schema()
        log(f"embedded-sqlite: appending {plan.events:,} events over {plan.keys:,} keys")
        expected = populate(store, plan.events, plan.keys)
    log("embedded-sqlite: rebuilding, alternating with the hand-written loop")
    samples = alternate(
        plan,
        lambda: framework_sqlite(context, source_url, views_url, plan.batch),
        lambda: baseline_sqlite(source_path, views_path, topic, plan.batch),
    )
    assert read_view(views_url, "bench_totals") == expected, "framework view is wrong"
    assert read_view(views_url, "base_totals") == expected, "baseline view is wrong"
    result = summarise(plan, samples)
    result["memory"] = sqlite_memory(plan, directory, context)
    return result


def sqlite_memory(plan: Plan, directory: Path, full_context: str) -> list[dict[str, Any]]:
    out = []
    for events in (plan.memory_small, plan.events):
        context = f"benchmem{uuid.uuid4().hex[:8]}"
        source = directory / f"memory-{events}.db"
        if events == plan.events:
            source, context = directory / "source.db", full_context
        else:
            with EventStore(f"sqlite:///{source}", context=context, sqlite_synchronous="OFF") as s:
                s.create_schema()
                populate(s, events, plan.keys)
        views = directory / f"memory-views-{events}.db"
        log(f"embedded-sqlite: memory of a rebuild of {events:,} events (fresh process)")
        probe = memory_probe(
            "embedded-sqlite", f"sqlite:///{source}", f"sqlite:///{views}", context, plan.batch
        )
        out.append(probe)
    return out


def bench_kafka(plan: Plan, database_url: str, servers: str) -> dict[str, Any]:
    kafka = KafkaConfig(servers, partitions=PARTITIONS)
    admin = sa.create_engine(
        make_url(database_url).set(drivername="postgresql+psycopg"),
        isolation_level="AUTOCOMMIT",
        poolclass=sa.NullPool,
    )
    tag = f"es_bench_rebuild_{time.strftime('%Y%m%d%H%M%S')}_{uuid.uuid4().hex[:6]}"
    created: list[str] = []

    def database(name: str) -> str:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{tag}_{name}"')
        created.append(f"{tag}_{name}")
        return admin.url.set(database=f"{tag}_{name}").render_as_string(hide_password=False)

    contexts: list[str] = []
    try:
        result: dict[str, Any] = {}
        source_url, views_url = database("source"), database("views")
        context = f"benchrb{uuid.uuid4().hex[:8]}"
        contexts.append(context)
        with EventStore(source_url, context=context) as store:
            store.create_schema()
            log(f"kafka-postgres: appending {plan.events:,} events over {plan.keys:,} keys")
            expected = populate(store, plan.events, plan.keys)
            log("kafka-postgres: relaying them to Kafka (6 partitions), untimed")
            with Relay(store, kafka, batch_size=20_000) as relay:
                relay.run(until_caught_up=True)
        with create_engine(views_url).connect() as conn:
            result["postgresql"] = conn.exec_driver_sql("SHOW server_version").scalar_one()
        topic = f"{context}.{AGGREGATE}"
        log("kafka-postgres: rebuilding, alternating with the hand-written loop")
        samples = alternate(
            plan,
            lambda: framework_kafka(context, kafka, views_url, plan.batch),
            lambda: baseline_kafka(kafka, topic, views_url, plan.batch),
        )
        assert read_view(views_url, "bench_totals") == expected, "framework view is wrong"
        assert read_view(views_url, "base_totals") == expected, "baseline view is wrong"
        result.update(summarise(plan, samples))
        memory = []
        for events in (plan.memory_small, plan.events):
            probe_context = context
            if events != plan.events:
                probe_context = f"benchmem{uuid.uuid4().hex[:8]}"
                contexts.append(probe_context)
                with EventStore(database(f"mem{events}"), context=probe_context) as small:
                    small.create_schema()
                    populate(small, events, plan.keys)
                    with Relay(small, kafka, batch_size=20_000) as relay:
                        relay.run(until_caught_up=True)
            log(f"kafka-postgres: memory of a rebuild of {events:,} events (fresh process)")
            memory.append(
                memory_probe(
                    "kafka-postgres",
                    servers,
                    database(f"memviews{events}"),
                    probe_context,
                    plan.batch,
                )
            )
        result["memory"] = memory
        return result
    finally:
        from eventsource.bus.admin import TopicAdmin

        topics = TopicAdmin(kafka)
        for context in contexts:
            topics.delete(list(topics.list_topics(f"{context}.")))
        with admin.connect() as conn:
            for name in created:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


# -- output -----------------------------------------------------------------------------------


def tables(plan: Plan, results: dict[str, Any]) -> list[ReportTable]:
    out = []
    for backend, r in results.items():
        table = ReportTable(
            f"{backend}: rebuild {plan.events:,} events into {plan.keys:,} rows"
            f" (median of {plan.runs}, batches of {plan.batch:,})",
            ["contender", "events/s", "seconds"],
        )
        for name, label in (("framework", "rebuild()"), ("baseline", "hand-written loop")):
            table.rows.append([label, rate(r["events_per_s"][name]), f"{r['seconds'][name]:.2f}"])
        table.notes.append(
            f"ratio rebuild()/hand-written {ratio(r['ratio'])}"
            f" (target >= {TARGET_RATIO}: {verdict(r['ratio'] >= TARGET_RATIO)})"
        )
        if backend == "embedded-sqlite" and plan.events == 1_000_000:
            fast = r["seconds"]["framework"] < TARGET_SQLITE_SECONDS
            table.notes.append(
                f"1M events in {r['seconds']['framework']:.2f} s"
                f" (target < {TARGET_SQLITE_SECONDS:.0f} s: {verdict(fast)})"
            )
        out.append(table)
        memory = ReportTable(
            f"{backend}: peak memory of a rebuild in a fresh process (maxrss)",
            ["events", "before rebuild MiB", "peak during it MiB", "growth MiB", "events/s"],
        )
        for probe in r["memory"]:
            memory.rows.append(
                [
                    f"{probe['events']:,}",
                    f"{probe['before_kib'] / 1024:.1f}",
                    f"{probe['peak_kib'] / 1024:.1f}",
                    f"{(probe['peak_kib'] - probe['before_kib']) / 1024:.1f}",
                    rate(probe["events"] / probe["s"]),
                ]
            )
        out.append(memory)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int)
    parser.add_argument("--keys", type=int)
    parser.add_argument("--runs", type=int)
    parser.add_argument("--batch", type=int)
    parser.add_argument("--backend", choices=[*BACKENDS, "all"], default="all")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--database-url", default=os.environ.get("EVENTSOURCE_DATABASE_URL"))
    parser.add_argument(
        "--bootstrap-servers", default=os.environ.get("EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS")
    )
    parser.add_argument("--sqlite-dir", default=None)
    parser.add_argument("--probe", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--probe-source", help=argparse.SUPPRESS)
    parser.add_argument("--probe-views", help=argparse.SUPPRESS)
    parser.add_argument("--probe-context", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = QUICK if args.quick else DEFAULT
    plan = replace(
        plan,
        **{
            k: v
            for k, v in {
                "events": args.events,
                "keys": args.keys,
                "runs": args.runs,
                "batch": args.batch,
            }.items()
            if v
        },
    )
    if args.probe:
        return run_probe(args)
    if args.events and not args.quick:
        plan = replace(plan, memory_small=max(1, plan.events // 4))
    backends = BACKENDS if args.backend == "all" else (args.backend,)
    results: dict[str, Any] = {}
    postgres_version = None
    if "embedded-sqlite" in backends:
        with tempfile.TemporaryDirectory(prefix="es-bench-rebuild-", dir=args.sqlite_dir) as d:
            results["embedded-sqlite"] = bench_sqlite(plan, Path(d))
    if "kafka-postgres" in backends:
        if not args.database_url or not args.bootstrap_servers:
            print("kafka-postgres needs --database-url and --bootstrap-servers", file=sys.stderr)
            return 2
        results["kafka-postgres"] = bench_kafka(plan, args.database_url, args.bootstrap_servers)
        postgres_version = str(results["kafka-postgres"].pop("postgresql"))
    info = machine(postgres_version)
    settings = {**asdict(plan), "partitions": PARTITIONS}
    if args.json:
        print(json.dumps({"machine": info, "plan": settings, "results": results}, indent=2))
    else:
        render(header_lines(info, settings), tables(plan, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
