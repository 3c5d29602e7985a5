"""Bus benchmarks: the relay and the consumers against hand-written confluent-kafka loops.

    .venv/bin/python -m benchmarks.bench_bus [--events N] [--quick] [--json]
                                             [--bootstrap-servers HOST:PORT]
                                             [--database-url URL]

Two benchmarks (see benchmarks/README.md), from one populated SQLite store
(and the same events in a PostgreSQL store, given a database URL):

1. relay: `Relay.run(until_caught_up=True)` from the store to Kafka (from
   each store), against a hand-written transactional producer loop sending
   the same messages already encoded (same topics, keys, values, headers and
   transaction size), and a non-transactional idempotent producer (the floor);
2. consume + decode: `KafkaLogConsumer.poll` and `store.codec.decode` of every
   message, against a raw `Consumer.consume` loop with `orjson.loads` of each
   value; and the embedded `SqlLogConsumer` reading the same events from SQLite.

Each run relays into fresh topics; the contenders take turns, the order
rotating from run to run; the reported rate is the median of the timed runs
(after one untimed warm-up run). Every topic the benchmark creates is deleted
at the end.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import confluent_kafka
import orjson
import sqlalchemy as sa
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka import TopicPartition as KafkaTopicPartition
from sqlalchemy.engine import make_url

from benchmarks.model import Order, full_orders
from benchmarks.report import (
    Table,
    header_lines,
    log,
    machine,
    median,
    rate,
    ratio,
    render,
    turns,
    verdict,
)
from eventsource import EventStore, Repository
from eventsource.bus import wire
from eventsource.bus.admin import TopicAdmin
from eventsource.bus.base import StartAt, TopicPartition
from eventsource.bus.config import KafkaConfig
from eventsource.bus.kafka import KafkaLogConsumer
from eventsource.bus.relay import Relay
from eventsource.bus.sqllog import SqlLogConsumer

TARGET = 0.7
PREFETCH = 1.0  # seconds a reader may fetch ahead before its clock starts
RELAY = ("relay", "baseline", "floor")
RELAY_POSTGRES = "relay_pg"
CONSUME = ("framework", "raw", "raw_headers", "embedded")


@dataclass(frozen=True)
class Plan:
    events: int  # in the store, relayed and read per run
    runs: int  # timed runs (plus one warm-up run)
    batch: int  # events per Kafka transaction (the relay's batch size)
    poll: int  # messages per poll / consume call
    partitions: int  # per topic


DEFAULT = Plan(events=50_000, runs=3, batch=5000, poll=1000, partitions=6)
QUICK = Plan(events=5_000, runs=1, batch=1000, poll=1000, partitions=6)


@contextmanager
def timed(into: list[float]) -> Iterator[None]:
    gc.collect()
    start = time.perf_counter()
    yield
    into.append(time.perf_counter() - start)


# -- set-up ----------------------------------------------------------------------


class Bench:
    """The stores, the Kafka topics of every run, and clean-up."""

    def __init__(
        self, plan: Plan, servers: str, directory: Path, database_url: str | None = None
    ) -> None:
        self.plan = plan
        self.kafka = KafkaConfig(servers, partitions=plan.partitions)
        self.admin = TopicAdmin(self.kafka)
        self.prefix = f"bench-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.url = f"sqlite:///{directory / 'bus.db'}"
        self.store = EventStore(self.url, context=self.context("store"))
        self.store.create_schema()
        self.contexts: list[str] = []
        # The same events in PostgreSQL, in a database of their own.
        self.pg_url: str | None = None
        self.pg_version: str | None = None
        self._pg_admin: sa.Engine | None = None
        self._pg_database = self.prefix.replace("-", "_")
        if database_url and make_url(database_url).get_backend_name() == "postgresql":
            self._pg_admin = sa.create_engine(
                make_url(database_url).set(drivername="postgresql+psycopg"),
                isolation_level="AUTOCOMMIT",
                poolclass=sa.NullPool,
            )
            with self._pg_admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{self._pg_database}"')
                version = str(conn.exec_driver_sql("SHOW server_version").scalar_one())
                self.pg_version = version.split(maxsplit=1)[0]
            url = self._pg_admin.url.set(database=self._pg_database)
            self.pg_url = url.render_as_string(hide_password=False)
            with EventStore(self.pg_url, context=self.context("store")) as store:
                store.create_schema()

    def context(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def populate(self) -> None:
        populate(self.store, self.plan.events)
        if self.pg_url is not None:
            with EventStore(self.pg_url, context=self.context("store")) as store:
                populate(store, self.plan.events)
                # A live store's table has statistics (autovacuum sees to it);
                # without them PostgreSQL may sort the whole table for each page.
                with store.engine.connect() as conn:
                    conn.exec_driver_sql("ANALYZE events")
                    conn.commit()

    def fresh(self, name: str, url: str | None = None) -> EventStore:
        """The same events under a new context, hence new (empty) topics."""
        context = self.context(name)
        self.contexts.append(context)
        store = EventStore(url or self.url, context=context)
        self.admin.ensure([store.topic_for(Order.type_name)])
        return store

    def partitions(self, topic: str) -> list[TopicPartition]:
        return [TopicPartition(topic, p) for p in range(self.plan.partitions)]

    def close(self) -> None:
        self.store.close()
        topics = self.admin.list_topics(self.prefix)
        self.admin.delete(topics)
        log(f"deleted {len(topics)} topics")
        if self._pg_admin is not None:
            with self._pg_admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self._pg_database}" WITH (FORCE)')
            self._pg_admin.dispose()


def populate(store: EventStore, events: int) -> None:
    """Orders of 10 events, saved 100 orders at a time; the same ones in every store."""
    rng = random.Random(42)
    orders = Repository(store, Order)
    per_save = 100
    for i in range(0, events // 10, per_save):
        count = min(per_save, events // 10 - i)
        orders.save(*full_orders(f"order-{i}", count, rng))


# -- 1. relay ----------------------------------------------------------------------


def relay_run(bench: Bench, run: str, url: str | None = None) -> tuple[float, float, str]:
    """(start-up seconds, relay seconds, topic) of `Relay` into fresh topics, from
    the SQLite store or the one at `url`."""
    store = bench.fresh(f"relay-{'pg-' if url else ''}{run}", url)
    relay = Relay(store, bench.kafka, batch_size=bench.plan.batch)
    try:
        started = time.perf_counter()
        relay.start()
        start_up = time.perf_counter() - started
        seconds: list[float] = []
        with timed(seconds):
            relayed = relay.run(until_caught_up=True)
        assert relayed == bench.plan.events, relayed
    finally:
        relay.close()
        store.close()
    return start_up, seconds[0], store.topic_for(Order.type_name)


Encoded = list[tuple[str, bytes, bytes, wire.Headers, int]]


def encoded(bench: Bench, context: str) -> Encoded:
    out: Encoded = []
    after = 0
    while records := bench.store.read_log(after, 10_000):
        for r in records:
            key, value, headers, timestamp = wire.encode(r)
            out.append((f"{context}.{r.aggregate_type}", key, value, headers, timestamp))
        after = records[-1].position
    return out


def produce_all(producer: Producer, messages: Encoded) -> None:
    for topic, key, value, headers, timestamp in messages:
        while True:
            try:
                producer.produce(topic, value, key, headers=headers, timestamp=timestamp)
                break
            except BufferError:
                producer.poll(0.05)


def baseline_run(bench: Bench, run: str) -> float:
    """A hand-written transactional loop: the same messages, already encoded."""
    context = bench.fresh(f"baseline-{run}").context
    messages = encoded(bench, context)
    producer = Producer(bench.kafka.producer(f"{context}-tx"))
    producer.init_transactions(30)
    seconds: list[float] = []
    with timed(seconds):
        for i in range(0, len(messages), bench.plan.batch):
            producer.begin_transaction()
            produce_all(producer, messages[i : i + bench.plan.batch])
            producer.commit_transaction(60)
    producer.flush(30)
    return seconds[0]


def floor_run(bench: Bench, run: str) -> float:
    """The idempotent producer without transactions: the cost of Kafka alone."""
    context = bench.fresh(f"floor-{run}").context
    messages = encoded(bench, context)
    producer = Producer(bench.kafka.producer())
    seconds: list[float] = []
    with timed(seconds):
        produce_all(producer, messages)
        assert producer.flush(60) == 0
    return seconds[0]


# -- 2. consume + decode --------------------------------------------------------------


def framework_consume(bench: Bench, topic: str) -> float:
    """`KafkaLogConsumer.poll` + `codec.decode`: events/s from the first message on."""
    codec = bench.store.codec
    consumer = KafkaLogConsumer(bench.kafka)

    def step() -> int:
        n = 0
        for message in consumer.poll(bench.plan.poll, 1.0):
            assert message.record is not None
            codec.decode(message.record)
            n += 1
        return n

    try:
        consumer.assign({tp: StartAt(0) for tp in bench.partitions(topic)})
        return _read_rate(step, bench.plan.events)
    finally:
        consumer.close()


def raw_consume(bench: Bench, topic: str, *, headers: bool = False) -> float:
    """`Consumer.consume` + `orjson.loads(value)` (and, with `headers`, reading the
    headers that carry the metadata): events/s from the first message on."""
    consumer = Consumer(bench.kafka.consumer(f"{bench.prefix}-raw-{uuid.uuid4().hex[:6]}"))

    def step() -> int:
        n = 0
        for message in consumer.consume(bench.plan.poll, 1.0):
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(str(error))
                continue
            if headers:
                message.headers()
            orjson.loads(message.value())  # type: ignore[arg-type]
            n += 1
        return n

    try:
        consumer.assign([KafkaTopicPartition(topic, p, 0) for p in range(bench.plan.partitions)])
        return _read_rate(step, bench.plan.events)
    finally:
        consumer.close()


def embedded_consume(bench: Bench, topic: str) -> float:
    """`SqlLogConsumer.poll` + `codec.decode` of the store's own log: events/s."""
    del topic  # the embedded log reads the store, not Kafka
    codec = bench.store.codec
    consumer = SqlLogConsumer({bench.store.context: bench.store})
    consumer.assign({TopicPartition(bench.store.topic_for(Order.type_name), 0): StartAt(0)})

    def step() -> int:
        n = 0
        for message in consumer.poll(bench.plan.poll, 1.0):
            assert message.record is not None
            codec.decode(message.record)
            n += 1
        return n

    return _read_rate(step, bench.plan.events)


def _read_rate(step: Callable[[], int], total: int) -> float:
    """Events/s of `step` until `total` are read.

    The clock starts once the first messages are in and the client has had a
    moment to fetch ahead: this measures the work per message on the client,
    not how fast the broker serves a cold fetch, and treats every reader alike.
    """
    got = 0
    deadline = time.monotonic() + 60
    while not got:
        got += step()
        if time.monotonic() > deadline:
            raise RuntimeError("no message within 60 s")
    time.sleep(PREFETCH)
    warm = got
    seconds: list[float] = []
    with timed(seconds):
        while got < total:
            got += step()
    if got != total:
        raise RuntimeError(f"read {got} messages, expected {total}")
    return (total - warm) / seconds[0] if seconds[0] > 0 else float("inf")


# -- running -----------------------------------------------------------------------


def run_all(bench: Bench) -> dict[str, Any]:
    plan = bench.plan
    relayers = RELAY if bench.pg_url is None else (*RELAY, RELAY_POSTGRES)
    samples: dict[str, list[float]] = {name: [] for name in (*relayers, *CONSUME)}
    start_ups: list[float] = []
    for run in range(plan.runs + 1):
        label = "warm-up" if run == 0 else f"run {run}/{plan.runs}"
        rates: dict[str, float] = {}
        topic = ""
        for name in turns(relayers, run):
            if name == RELAY_POSTGRES:
                rates[name] = plan.events / relay_run(bench, str(run), bench.pg_url)[1]
            elif name == "relay":
                start_up, seconds, topic = relay_run(bench, str(run))
                rates[name] = plan.events / seconds
                if run:
                    start_ups.append(start_up)
            elif name == "baseline":
                rates[name] = plan.events / baseline_run(bench, str(run))
            else:
                rates[name] = plan.events / floor_run(bench, str(run))
        readers: dict[str, Callable[[Bench, str], float]] = {
            "framework": framework_consume,
            "raw": raw_consume,
            "raw_headers": partial(raw_consume, headers=True),
            "embedded": embedded_consume,
        }
        for name in turns(CONSUME, run):
            rates[name] = readers[name](bench, topic)
        log(f"{label}: " + ", ".join(f"{k} {v:,.0f}/s" for k, v in rates.items()))
        if run:
            for name, value in rates.items():
                samples[name].append(value)
    medians = {name: median(values) for name, values in samples.items()}
    return {
        "postgresql": bench.pg_version,
        "events_per_second": medians,
        "samples": samples,
        "relay_start_up_seconds": median(start_ups),
        "relay_vs_baseline": medians["relay"] / medians["baseline"],
        "relay_vs_floor": medians["relay"] / medians["floor"],
        "consume_vs_raw": medians["framework"] / medians["raw"],
        "embedded_vs_raw": medians["embedded"] / medians["raw"],
    }


def tables(results: dict[str, Any], plan: Plan) -> list[Table]:
    eps = results["events_per_second"]
    samples = results["samples"]

    def row(name: str, label: str, against: str) -> list[str]:
        values = samples[name]
        return [
            label,
            rate(eps[name]),
            rate(min(values)),
            rate(max(values)),
            ratio(eps[name] / eps[against]),
        ]

    relay = Table(
        f"1. relay: store -> Kafka, events/s ({plan.events:,} events,"
        f" {plan.batch:,} per transaction, {plan.partitions} partitions)",
        ["contender", "median", "min", "max", "/ baseline"],
    )
    relay.rows = [
        row("relay", "relay  Relay.run(until_caught_up=True)", "baseline"),
        row("baseline", "baseline  hand-written transactional loop", "baseline"),
        row("floor", "floor  idempotent producer, no transactions", "baseline"),
    ]
    if RELAY_POSTGRES in eps:
        relay.rows.insert(1, row(RELAY_POSTGRES, "relay  the same from PostgreSQL", "baseline"))
    relay.notes = [
        f"relay / baseline {ratio(results['relay_vs_baseline'])}"
        f" (target >= {TARGET}: {verdict(results['relay_vs_baseline'] >= TARGET)});"
        f" relay / floor {ratio(results['relay_vs_floor'])}",
        *(
            ["the relay from PostgreSQL reads a table with statistics (ANALYZE after filling it)"]
            if RELAY_POSTGRES in eps
            else ["no PostgreSQL --database-url: the relay from PostgreSQL was not measured"]
        ),
        "relay start-up (init_transactions, fencing, recovery from the topics' tails):"
        f" {results['relay_start_up_seconds'] * 1000:,.0f} ms, not in the rate",
    ]
    consume = Table(
        f"2. consume + decode, events/s ({plan.events:,} events, {plan.poll:,} per poll)",
        ["contender", "median", "min", "max", "/ raw"],
    )
    consume.rows = [
        row("framework", "framework  KafkaLogConsumer.poll + codec.decode", "raw"),
        row("raw", "raw  Consumer.consume + orjson.loads(value)", "raw"),
        row("raw_headers", "raw+headers  the same, also reading the headers", "raw"),
        row("embedded", "embedded  SqlLogConsumer.poll + codec.decode", "raw"),
    ]
    consume.notes = [
        f"framework / raw {ratio(results['consume_vs_raw'])}"
        f" (target >= {TARGET}: {verdict(results['consume_vs_raw'] >= TARGET)});"
        f" framework / raw+headers {ratio(eps['framework'] / eps['raw_headers'])}",
        "raw+headers is not a target: it shows what reading the metadata headers costs any client",
    ]
    return [relay, consume]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_bus", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--events", type=int, help="events in the store, relayed and read")
    parser.add_argument("--quick", action="store_true", help="a smaller run (under 30 s)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        help="the Kafka broker (default: EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("EVENTSOURCE_DATABASE_URL"),
        help="a PostgreSQL server to relay from too (default: EVENTSOURCE_DATABASE_URL)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = QUICK if args.quick else DEFAULT
    if args.events:
        plan = replace(plan, events=args.events)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="eventsource-bench-bus-") as directory:
        bench = Bench(plan, args.bootstrap_servers, Path(directory), args.database_url)
        try:
            log(
                f"populating {plan.events:,} events in {bench.url}"
                + (" and PostgreSQL" if bench.pg_url else "")
            )
            bench.populate()
            results = run_all(bench)
        finally:
            bench.close()
    info = machine(results["postgresql"])
    info["kafka"] = {
        "bootstrap_servers": args.bootstrap_servers,
        "confluent_kafka": metadata.version("confluent-kafka"),
        "librdkafka": confluent_kafka.libversion()[0],
    }
    settings = {**asdict(plan), "seconds": round(time.perf_counter() - started, 1)}
    if args.json:
        print(json.dumps({"machine": info, "plan": settings, "results": results}, indent=2))
    else:
        header = header_lines(info, settings)
        kafka = info["kafka"]
        header.insert(
            2,
            f"kafka       {kafka['bootstrap_servers']}, confluent-kafka"
            f" {kafka['confluent_kafka']}, librdkafka {kafka['librdkafka']}",
        )
        render(header, tables(results, plan))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
