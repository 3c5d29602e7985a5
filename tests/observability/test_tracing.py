"""One trace from `Repository.save` in orders, through the store, the relay and
Kafka's headers, to the shipping reactor's handler in another context."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.kafka


def test_a_trace_runs_from_the_save_to_the_handler_in_another_context(
    kafka_servers: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.observability.trace_scenario", kafka_servers, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    spans = [json.loads(line) for line in done.stdout.splitlines()]
    by_name = {s["name"]: s for s in spans}
    checkout = by_name["POST /checkout"]
    save = by_name["eventsource save order"]
    handle = by_name["eventsource handle OrderPaid"]
    # The save is a child of the application's span, the handler a child of
    # the save: one trace, through the store and Kafka's headers.
    assert save["parent"] == checkout["span"]
    assert handle["trace"] == save["trace"] == checkout["trace"]
    assert handle["parent"] == save["span"]
    assert handle["attributes"]["eventsource.consumer"] == "shipping.ship_paid_orders"
    # The relay's publish is a span too, linked to the traces it carried.
    relays = [s for s in spans if s["name"] == "eventsource relay orders"]
    assert relays
    assert save["trace"] in relays[0]["links"]


def test_without_a_tracer_provider_nothing_is_traced_or_stored(tmp_path: Path) -> None:
    from decimal import Decimal

    from eventsource import EventStore, Repository
    from eventsource.observability import tracing
    from sample_app.orders.domain import Order

    assert not tracing.active()  # the API is installed, no provider is set here
    with EventStore(f"sqlite:///{tmp_path / 'orders.db'}", context="orders") as store:
        store.create_schema()
        Repository(store, Order).save(Order.place("o-1", "c-1", Decimal(1)))
        [record] = store.read_log(0, 10)
    assert "traceparent" not in record.metadata
