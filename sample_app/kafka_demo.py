"""`python -m sample_app kafka-demo`: the same story on Kafka and PostgreSQL.

Each context gets its own PostgreSQL database; each runs its relay and its
workers as separate processes started with the `eventsource` command, exactly
as a deployment would:

    EVENTSOURCE_CONTEXT=orders EVENTSOURCE_DATABASE_URL=.../shop_orders eventsource relay run
    EVENTSOURCE_CONTEXT=shipping EVENTSOURCE_DATABASE_URL=.../shop_shipping \\
        eventsource projection run sample_app.shipping.views:AddressBook ...

Needs EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS and a PostgreSQL URL whose user may
create databases (EVENTSOURCE_DATABASE_URL, or --postgres). Topics get a fresh
prefix per run (EVENTSOURCE_TOPIC_PREFIX), so runs never see each other's events.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from confluent_kafka.admin import AdminClient
from sqlalchemy import Engine, create_engine, make_url, select

from eventsource import EventStore
from sample_app.connect_sink import TOPIC, check_worker, per_card, sink_alerts
from sample_app.contexts import CONSUMERS, CONTEXTS, TRANSFORMS
from sample_app.demo import check, print_read_models, report, rows
from sample_app.orders.views import OrderSummary
from sample_app.payments.views import CardAttempts, DeclinedCards
from sample_app.shipping.views import AddressBook, ShipmentsToDispatch
from sample_app.story import StoryFacts, tell

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sample_app kafka-demo")
    parser.add_argument("--postgres", default=os.environ.get("EVENTSOURCE_DATABASE_URL"))
    parser.add_argument("--kafka", default=os.environ.get("EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS"))
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument(
        "--connect",
        default=os.environ.get("EVENTSOURCE_CONNECT_URL"),
        help="A Kafka Connect worker's REST URL: a file sink then copies payments.card_alerts.",
    )
    parser.add_argument(
        "--keep", action="store_true", help="Keep the databases and the topics afterwards."
    )
    args = parser.parse_args(argv)
    if not args.postgres or not args.kafka:
        sys.exit(
            "kafka-demo needs --postgres URL and --kafka SERVERS (or the EVENTSOURCE_ variables)"
        )
    if args.connect:
        check_worker(args.connect)  # before the story, not after it
    run = uuid.uuid4().hex[:8]
    prefix = f"shop-{run}."
    os.environ.setdefault("SAMPLE_UNPAID_TIMEOUT", "3")
    with (
        databases(args.postgres, run, keep=args.keep) as urls,
        topics(args.kafka, prefix, keep=args.keep),
    ):
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("EVENTSOURCE_")},
            "EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS": args.kafka,
            "EVENTSOURCE_TOPIC_PREFIX": prefix,
            "EVENTSOURCE_TOPIC_PARTITIONS": "3",
            # Shipping copies customers' addresses: it reads their keys there.
            "EVENTSOURCE_KEYS": json.dumps({"customers": urls["customers"]}),
            "PYTHONPATH": str(ROOT),
        }
        stores = {ctx: EventStore(url, context=ctx) for ctx, url in urls.items()}
        for store in stores.values():
            store.create_schema()
        print(f"1. Four PostgreSQL databases, topics prefixed {prefix!r}")
        with processes(urls, env) as started:
            print(
                f"2. Started {len(started)} processes: a relay per context, their workers"
                " and transforms"
            )
            facts = tell(stores)
            print("3. Told the story; waiting for every context to catch up")
            engines = {ctx: s.engine for ctx, s in stores.items()}
            caught_up(facts, engines, timeout=args.timeout)
            print("4. The read models, each in its own context's database\n")
            print_read_models(engines)
            check(facts, engines)
            if args.connect:
                show_sink(args.connect, prefix, facts)
            else:
                print(
                    f"\n   (with --connect URL, a Kafka Connect file sink copies {TOPIC};"
                    " `scripts/services.sh connect-up` starts a worker)"
                )
        print("\n5. Rebuilding shipping's views from offset zero (workers stopped)")
        before = snapshot(engines["shipping"])
        for cls in (
            "sample_app.shipping.views:AddressBook",
            "sample_app.shipping.views:ShipmentsToDispatch",
        ):
            cli(["projection", "rebuild", cls], context_env(env, "shipping", urls["shipping"]))
        same = before == snapshot(engines["shipping"])
        print(f"   rebuilt views identical to the live ones: {'yes' if same else 'NO'}")
        for store in stores.values():
            store.close()
        if not same:
            sys.exit("the rebuilt shipping views differ from the live ones")


def show_sink(url: str, prefix: str, facts: StoryFacts) -> None:
    """Kafka Connect hands the transform's output on: a file sink of the alerts."""
    print(f"\n   Kafka Connect: a FileStreamSinkConnector reads {prefix}{TOPIC}")
    file, lines = sink_alerts(url, prefix, facts.declines)
    for line in lines[:3]:
        print(f"     {line}")
    if len(lines) > 3:
        print(f"     ... {len(lines) - 3} more")
    report(
        [(f"the sink wrote each card alert once, to {file}", per_card(lines) == facts.declines)],
        "the Connect sink's file does not hold the card alerts once each",
    )


def context_env(env: dict[str, str], context: str, url: str) -> dict[str, str]:
    return {**env, "EVENTSOURCE_CONTEXT": context, "EVENTSOURCE_DATABASE_URL": url}


def cli(args: list[str], env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "eventsource", *args], env=env, check=True, cwd=ROOT)


@contextmanager
def databases(admin_url: str, run: str, *, keep: bool) -> Iterator[dict[str, str]]:
    """A database per context on the PostgreSQL server of `admin_url`."""
    url = make_url(admin_url).set(drivername="postgresql+psycopg")
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    names = {ctx: f"shop_{run}_{ctx}" for ctx in CONTEXTS}
    with admin.connect() as conn:
        for name in names.values():
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield {
            ctx: url.set(database=n).render_as_string(hide_password=False)
            for ctx, n in names.items()
        }
    finally:
        if not keep:
            with admin.connect() as conn:
                for name in names.values():
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@contextmanager
def topics(servers: str, prefix: str, *, keep: bool) -> Iterator[None]:
    """The run's topics (all under `prefix`), deleted afterwards unless kept."""
    try:
        yield
    finally:
        if not keep:
            admin = AdminClient({"bootstrap.servers": servers})
            names = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
            for future in (admin.delete_topics(names) if names else {}).values():
                future.result(30)


@contextmanager
def processes(urls: dict[str, str], env: dict[str, str]) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Each context's relay and workers, as `eventsource` processes; stopped with SIGTERM."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        for ctx in CONTEXTS:
            ctx_env = context_env(env, ctx, urls[ctx])
            commands = [["relay", "run"]]
            if CONSUMERS[ctx]:
                commands.append(["projection", "run", *CONSUMERS[ctx]])
            # A transform on Kafka: one transaction per batch, no database.
            commands += [["transform", "run", name] for name in TRANSFORMS.get(ctx, [])]
            for args in commands:
                started.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "eventsource", *args],
                        env=ctx_env,
                        cwd=ROOT,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL if not os.environ.get("SAMPLE_VERBOSE") else None,
                    )
                )
        yield started
    finally:
        for process in started:
            process.send_signal(signal.SIGTERM)
        for process in started:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def caught_up(facts: StoryFacts, engines: dict[str, Engine], *, timeout: float) -> None:
    """Wait until every read model shows the whole story (or give up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _complete(facts, engines):
            return
        time.sleep(0.5)
    raise SystemExit(f"the read models did not catch up within {timeout:.0f} s")


def _complete(facts: StoryFacts, engines: dict[str, Engine]) -> bool:
    try:
        shipments = rows(engines["shipping"], ShipmentsToDispatch.shipments, "order_id")
        book = rows(engines["shipping"], AddressBook.addresses, "customer_id")
        orders = rows(engines["orders"], OrderSummary.orders, "order_id")
        with engines["payments"].connect() as conn:
            attempts = sum(conn.execute(select(CardAttempts.cards.c.attempts)).scalars())
            declines = sum(conn.execute(select(DeclinedCards.declines.c.declines)).scalars())
    except Exception:  # tables not created yet: the workers are starting
        return False
    closed = {o["order_id"] for o in orders if o["status"] in ("paid", "cancelled")}
    moved = all(
        any(b["customer_id"] == cid and b["street"] == a.street for b in book)
        for cid, a in facts.addresses.items()
    )
    return (
        len(shipments) == len(facts.paid_orders)
        and closed == facts.paid_orders | facts.unpaid_orders
        and moved
        and attempts == sum(facts.attempts.values())
        and declines == sum(facts.declines.values())
    )


def snapshot(engine: Engine) -> dict[str, list[dict[str, object]]]:
    return {
        "book": rows(engine, AddressBook.addresses, "customer_id"),
        "shipments": rows(engine, ShipmentsToDispatch.shipments, "order_id"),
    }
