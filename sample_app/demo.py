"""`python -m sample_app demo`: the whole story on the embedded default, no servers.

Four contexts, four SQLite files under ./demo-data (recreated on each run).
The workers of each context read the other contexts' stores as their log,
exactly as they would read Kafka topics in production. At the end a customer
is forgotten: their name and addresses read as forgotten everywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table as TextTable
from sqlalchemy import Engine, Table, select

from eventsource import (
    FORGOTTEN,
    EventStore,
    Repository,
    Runtime,
    Settings,
    load_class,
    rebuild,
    run_workers,
)
from sample_app.contexts import CONSUMERS, CONTEXTS, TRANSFORMS
from sample_app.customers.domain import Customer
from sample_app.orders.domain import Order
from sample_app.orders.timeouts import CancelUnpaidOrders
from sample_app.orders.views import OrderSummary
from sample_app.payments.views import (
    CardAttempts,
    DeclinedCards,
    flagged_cards_query,
    fraud_windows,
)
from sample_app.shipping.views import AddressBook, ShipmentsToDispatch
from sample_app.story import CUSTOMERS, StoryFacts, tell

DEMO_TIMEOUT_SECONDS = "2"
FORGOTTEN_CUSTOMER = "c-alan"
ROOT = Path(__file__).resolve().parent.parent


def store_urls(data_dir: Path) -> dict[str, str]:
    return {ctx: f"sqlite:///{data_dir / ctx}.db" for ctx in CONTEXTS}


def settings_for(context: str, urls: dict[str, str]) -> Settings:
    """A context's settings on the embedded log: its own database, and where the others are."""
    # Embedded, whatever the environment says about Kafka.
    return Settings(
        database_url=urls[context], context=context, stores=urls, kafka_bootstrap_servers=None
    )


def run_context(context: str, urls: dict[str, str]) -> None:
    """Run every transform, projection and reactor of `context` until it has caught up."""
    for transform in TRANSFORMS.get(context, []):
        run_transform(transform, context, urls)
    names = CONSUMERS[context]
    if not names:
        return
    with Runtime(settings_for(context, urls)) as runtime:
        workers = [runtime.worker(load_class(name)) for name in names]
        run_workers(workers, stop=threading.Event(), until_caught_up=True, lag_interval=0)


def run_transform(name: str, context: str, urls: dict[str, str]) -> None:
    """`eventsource transform run NAME --until-caught-up` in `context`, as a deployment runs it
    (there without `--until-caught-up`): on the embedded log, its output goes to the
    context's store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSOURCE_")}
    env.update(
        EVENTSOURCE_CONTEXT=context,
        EVENTSOURCE_DATABASE_URL=urls[context],
        EVENTSOURCE_STORES=json.dumps(urls),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    command = ["eventsource", "transform", "run", name, "--until-caught-up"]
    done = subprocess.run(
        [sys.executable, "-m", *command], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    print(f"   {context}: {' '.join(command)}\n     {done.stdout.strip().splitlines()[-1]}")


def wait_for_deadlines(urls: dict[str, str], unpaid: set[str], timeout: float) -> None:
    """Run the orders worker, with its scheduler, until the unpaid orders are cancelled."""
    with Runtime(settings_for("orders", urls)) as runtime:
        worker = runtime.worker(CancelUnpaidOrders)
        stop = threading.Event()
        thread = threading.Thread(
            target=run_workers, args=([worker],), kwargs={"stop": stop, "lag_interval": 0}
        )
        thread.start()
        deadline = time.monotonic() + timeout
        orders = Repository(runtime.store(), Order)
        try:
            while time.monotonic() < deadline:
                if all(orders.get(order).status == "cancelled" for order in unpaid):
                    break
                time.sleep(0.2)
        finally:
            stop.set()
            thread.join()


def rows(engine: Engine, table: Table, order_by: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        result = conn.execute(select(table).order_by(table.c[order_by])).mappings()
        return [dict(r) for r in result]


def show(title: str, data: list[dict[str, Any]], columns: list[str]) -> None:
    table = TextTable(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in data:
        table.add_row(*("" if row[c] is None else str(row[c]) for c in columns))
    # rich renders plainly when stdout is not a terminal; wide enough for the rows.
    Console(width=160 if not sys.stdout.isatty() else None).print(table)


@contextmanager
def customers_keys(urls: dict[str, str]) -> Iterator[None]:
    """Shipping copies customers' personal data: its codecs read the customers'
    keys from their database (`EVENTSOURCE_KEYS`, as a deployment sets it)."""
    before = os.environ.get("EVENTSOURCE_KEYS")
    os.environ["EVENTSOURCE_KEYS"] = json.dumps({"customers": urls["customers"]})
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("EVENTSOURCE_KEYS", None)
        else:
            os.environ["EVENTSOURCE_KEYS"] = before


def main(data_dir: Path = Path("demo-data")) -> None:
    started = time.monotonic()
    os.environ.setdefault("SAMPLE_UNPAID_TIMEOUT", DEMO_TIMEOUT_SECONDS)
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    urls = store_urls(data_dir)
    with customers_keys(urls):
        run_story(data_dir, urls)
    print(f"\nDone in {time.monotonic() - started:.1f} s. Run it again: it starts from scratch.")


def run_story(data_dir: Path, urls: dict[str, str]) -> None:
    with Runtime(settings_for("customers", urls)) as runtime:
        stores = {ctx: runtime.store(ctx) for ctx in CONTEXTS}
        for store in stores.values():
            store.create_schema()
        print(f"1. Telling the story to four contexts (databases in {data_dir}/)")
        facts = tell(stores)
        for ctx, store in stores.items():
            print(f"   {ctx:<10} {store.head_position():>3} events")
        engines = {ctx: store.engine for ctx, store in stores.items()}

        print("2. Running every context's transforms, projections and reactors until they catch up")
        for context in ("shipping", "orders", "payments", "shipping"):
            run_context(context, urls)
        print(
            f"3. Waiting for the unpaid-order deadlines ({os.environ['SAMPLE_UNPAID_TIMEOUT']} s)"
        )
        wait_for_deadlines(
            urls, facts.unpaid_orders, timeout=float(os.environ["SAMPLE_UNPAID_TIMEOUT"]) + 15
        )
        run_context("orders", urls)

        print("4. The read models, each in its own context's database\n")
        print_read_models(engines)
        check(facts, engines)

        print("\n5. Rebuilding shipping's views from offset zero")
        before = {t.name: rows(engines["shipping"], t, _key(t)) for t in _shipping_tables()}
        for cls in (AddressBook, ShipmentsToDispatch):
            with Runtime(settings_for("shipping", urls)) as shipping:
                applied = rebuild(
                    cls, shipping.log(f"{cls.name}.rebuild"), engine=engines["shipping"]
                )
            print(f"   {cls.name}: {applied} events replayed, tables swapped in")
        after = {t.name: rows(engines["shipping"], t, _key(t)) for t in _shipping_tables()}
        same = before == after
        print(f"   rebuilt views identical to the live ones: {'yes' if same else 'NO'}")
        if not same:
            raise SystemExit("the rebuilt shipping views differ from the live ones")

        print(f"\n6. Forgetting customer {FORGOTTEN_CUSTOMER} (erasure of personal data)")
        forget_a_customer(stores["customers"], engines, data_dir, urls)


def forget_a_customer(
    customers: EventStore, engines: dict[str, Engine], data_dir: Path, urls: dict[str, str]
) -> None:
    """Forget a customer; show and check what every context reads afterwards."""
    forgotten = customers.forget(FORGOTTEN_CUSTOMER)
    print(f"   customers: the key is deleted; a notice is at position {forgotten.position}")
    customer = Repository(customers, Customer).get(FORGOTTEN_CUSTOMER)
    print(
        f"   customers: Repository.get({FORGOTTEN_CUSTOMER!r}) -> name={customer.name!r},"
        f" email={customer.email!r}, address={customer.address!r}"
    )
    run_context("shipping", urls)
    book = rows(engines["shipping"], AddressBook.addresses, "customer_id")
    print(f"   shipping: the address book holds {', '.join(r['customer_id'] for r in book)}")
    name = CUSTOMERS[FORGOTTEN_CUSTOMER][0]
    stored = b"".join(p.read_bytes() for p in sorted(data_dir.glob("customers.db*")))
    checks = [
        (
            f"{FORGOTTEN_CUSTOMER} loads, and reads as forgotten",
            (customer.name, customer.email, customer.address) == (FORGOTTEN, FORGOTTEN, None),
        ),
        (
            "the other customers read as before",
            Repository(customers, Customer).get("c-ada").name == CUSTOMERS["c-ada"][0],
        ),
        (
            "shipping's address book dropped its copy",
            FORGOTTEN_CUSTOMER not in {r["customer_id"] for r in book},
        ),
        (f"{name!r} is in no byte of the customers database", name.encode() not in stored),
    ]
    report(checks, "forgetting a customer did not erase them")


def report(checks: list[tuple[str, bool]], failure: str) -> None:
    print()
    for text, ok in checks:
        print(f"   [{'ok' if ok else 'FAILED'}] {text}")
    if not all(ok for _, ok in checks):
        raise SystemExit(failure)


def print_read_models(engines: dict[str, Engine]) -> None:
    show(
        "orders: orders_summary",
        rows(engines["orders"], OrderSummary.orders, "order_id"),
        ["order_id", "customer_id", "total", "status"],
    )
    show(
        "shipping: shipping_address_book (local copy of the customers' addresses)",
        rows(engines["shipping"], AddressBook.addresses, "customer_id"),
        ["customer_id", "name", "street", "city", "country"],
    )
    show(
        "shipping: shipping_to_dispatch (one shipment per paid order)",
        rows(engines["shipping"], ShipmentsToDispatch.shipments, "order_id"),
        ["order_id", "customer_id", "street", "city", "status"],
    )
    show(
        "payments: payments_card_attempts",
        rows(engines["payments"], CardAttempts.cards, "card_number"),
        ["card_number", "attempts", "declined", "last_attempt_at"],
    )
    with engines["payments"].connect() as conn:
        windows = [dict(r) for r in conn.execute(fraud_windows.windows_over(3)).mappings()]
    show(
        "payments: cards with more than 3 attempts in a 5-minute window (flagged)",
        windows,
        ["card_number", "window_start", "window_end", "count"],
    )
    show(
        "payments: payments_declined_cards (read from payments.card_alerts)",
        rows(engines["payments"], DeclinedCards.declines, "card_number"),
        ["card_number", "declines", "last_payment_id", "last_declined_at"],
    )


def check(facts: StoryFacts, engines: dict[str, Engine]) -> None:
    """Say whether the read models show what the story implies."""
    shipments = {
        r["order_id"] for r in rows(engines["shipping"], ShipmentsToDispatch.shipments, "order_id")
    }
    book = rows(engines["shipping"], AddressBook.addresses, "customer_id")
    addresses = {r["customer_id"]: (r["street"], r["city"]) for r in book}
    expected = {cid: (a.street, a.city) for cid, a in facts.addresses.items()}
    statuses = {
        r["order_id"]: r["status"] for r in rows(engines["orders"], OrderSummary.orders, "order_id")
    }
    with engines["payments"].connect() as conn:
        flagged = set(conn.execute(flagged_cards_query()).scalars())  # type: ignore[call-overload]
    declined = rows(engines["payments"], DeclinedCards.declines, "card_number")
    checks = [
        (
            "every paid order has exactly one shipment, no unpaid order has one",
            shipments == facts.paid_orders,
        ),
        ("shipping's address book equals the customers' latest addresses", addresses == expected),
        (
            "unpaid orders were cancelled by their deadline",
            all(statuses[o] == "cancelled" for o in facts.unpaid_orders),
        ),
        (
            "flagged cards are exactly those with > 3 attempts in one window",
            flagged == facts.flagged_cards,
        ),
        (
            "each declined attempt became one alert on payments.card_alerts, keyed by its card",
            {r["card_number"]: r["declines"] for r in declined} == facts.declines,
        ),
    ]
    report(checks, "the read models do not match the story")


def _shipping_tables() -> list[Table]:
    return [AddressBook.addresses, ShipmentsToDispatch.shipments]


def _key(table: Table) -> str:
    return next(iter(table.primary_key.columns)).name
