"""The sample app's story on the embedded default: the read models match what it implies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from eventsource import FORGOTTEN, EventStore, Repository
from eventsource.store.engine import create_engine, read_transaction
from sample_app import demo
from sample_app.customers.domain import Customer
from sample_app.orders.views import OrderSummary
from sample_app.payments.views import DeclinedCards, flagged_cards_query
from sample_app.shipping.views import AddressBook, ShipmentsToDispatch
from sample_app.story import APPROVED, ATTEMPTS, CUSTOMERS, MOVES, ORDERS

ROOT = Path(__file__).resolve().parents[2]


def expected() -> tuple[set[str], set[str], dict[str, tuple[str, str]], set[str]]:
    paid = {oid for oid, _, _, p in ORDERS if p}
    unpaid = {oid for oid, _, _, p in ORDERS if not p}
    addresses = {cid: (a.street, a.city) for cid, (_, _, a) in CUSTOMERS.items()}
    addresses.update({cid: (a.street, a.city) for cid, a in MOVES.items()})
    # Worked out by hand from ATTEMPTS: 5 attempts in 10:00-10:05, 4 in 10:20-10:25.
    flagged = {"4111111111111111", "6011000000000004"}
    assert set(ATTEMPTS) >= flagged
    return paid, unpaid, addresses, flagged


def test_demo_read_models_match_the_story(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAMPLE_UNPAID_TIMEOUT", "1")
    demo.main(tmp_path / "data")
    urls = demo.store_urls(tmp_path / "data")
    paid, unpaid, addresses, flagged = expected()

    shipping = create_engine(urls["shipping"])
    orders = create_engine(urls["orders"])
    payments = create_engine(urls["payments"])
    with read_transaction(shipping) as conn:
        shipments = conn.execute(select(ShipmentsToDispatch.shipments)).mappings().all()
        book = conn.execute(select(AddressBook.addresses)).mappings().all()
    with read_transaction(orders) as conn:
        statuses = dict(
            conn.execute(select(OrderSummary.orders.c.order_id, OrderSummary.orders.c.status)).all()
        )
    with read_transaction(payments) as conn:
        cards = set(conn.execute(flagged_cards_query()).scalars())  # type: ignore[call-overload]
        declines = conn.execute(select(DeclinedCards.declines)).mappings().all()

    order_ids = [s["order_id"] for s in shipments]
    assert sorted(order_ids) == sorted(paid)  # exactly one each, none for unpaid orders
    # The demo ends by forgetting a customer: shipping's copy of them is gone.
    del addresses[demo.FORGOTTEN_CUSTOMER]
    assert {r["customer_id"]: (r["street"], r["city"]) for r in book} == addresses
    assert {o for o, s in statuses.items() if s == "cancelled"} == unpaid
    assert {o for o, s in statuses.items() if s == "paid"} == paid
    assert cards == flagged
    # The card_alerts transform ran: each declined attempt reached DeclinedCards once.
    assert {r["card_number"]: r["declines"] for r in declines} == {
        card: sum((card, m) not in APPROVED for m in minutes) for card, minutes in ATTEMPTS.items()
    }
    assert APPROVED  # one card's declines differ from its attempts
    # Ada moved before her orders were paid: both shipments go to the new address.
    ada = {s["order_id"]: s["street"] for s in shipments if s["customer_id"] == "c-ada"}
    assert set(ada.values()) == {MOVES["c-ada"].street}
    for engine in (shipping, orders, payments):
        engine.dispose()
    with EventStore(urls["customers"], context="customers") as customers:
        forgotten = Repository(customers, Customer).get(demo.FORGOTTEN_CUSTOMER)
        assert (forgotten.name, forgotten.email, forgotten.address) == (FORGOTTEN, FORGOTTEN, None)
        assert Repository(customers, Customer).get("c-ada").name == CUSTOMERS["c-ada"][0]


def test_readme_demo_command_runs_twice(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTSOURCE_")}
    env["SAMPLE_UNPAID_TIMEOUT"] = "1"
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "sample_app", "demo"],
            cwd=tmp_path,
            env={**env, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "rebuilt views identical to the live ones: yes" in done.stdout
        assert "[ok] c-alan loads, and reads as forgotten" in done.stdout
        assert "[ok] shipping's address book dropped its copy" in done.stdout
        assert "eventsource transform run sample_app.payments.alerts:card_alerts" in done.stdout
        assert "[ok] each declined attempt became one alert on payments.card_alerts" in done.stdout
        assert "[FAILED]" not in done.stdout
