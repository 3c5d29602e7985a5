"""What one sample of the sample app's scene holds, read through the framework's APIs."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from eventsource.dashboard import Sampler, Sources, WatchedTransform
from eventsource.dashboard.sources import watched
from eventsource.errors import StoreError
from eventsource.store.engine import create_engine
from sample_app.payments.alerts import declined
from sample_app.story import ORDERS
from tests.dashboard.scene import PARKED_ORDER, SHOWN, Scene


def open_sources(scene: Scene, names: list[str] = SHOWN) -> Sources:
    settings = scene.settings("shipping")
    consumers = [watched(name, "shipping") for name in names]
    engines = {ctx: create_engine(url) for ctx, url in scene.urls.items()}
    return Sources(settings, consumers, engines)


@pytest.fixture
def sample(scene: Scene) -> Iterator[Any]:
    """`sample(**options)`: one snapshot of the scene's consumers, as the page gets it."""
    samplers: list[Sampler] = []

    def take(**options: Any) -> dict[str, Any]:
        sampler = Sampler(open_sources(scene), **options)
        samplers.append(sampler)
        return sampler.sample()

    yield take
    for sampler in samplers:
        sampler.close()


def consumer(snapshot: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [c for c in snapshot["consumers"] if c["name"] == name]
    return found


def test_a_consumer_that_never_ran_lags_by_every_event_of_its_topic(scene, sample) -> None:
    found = consumer(sample(), "payments.card_attempts")
    assert found["status"] == "never run"
    assert found["lag_events"] == scene.count("payments", "payment") == 18
    assert found["error"] is None


def test_caught_up_consumers_lag_by_nothing(sample) -> None:
    snapshot = sample()
    for name in ("orders.summary", "orders.cancel_unpaid", "shipping.address_book"):
        assert consumer(snapshot, name)["lag_events"] == 0, name
        assert consumer(snapshot, name)["status"] == "stopped", name


def test_the_parked_event_shows_with_its_error_and_event(sample) -> None:
    audit = consumer(sample(), "orders.audit")
    assert audit["parked"] == 1
    assert audit["dead_letter_counts"] == {"parked": 1}
    [letter] = audit["dead_letters"]
    assert letter["status"] == "parked"
    assert letter["event_type"] == "OrderPlaced"
    assert letter["stream_id"] == f"order:{PARKED_ORDER}"
    assert "AuditFailed" in letter["error"]
    assert "cannot read this order's total" in letter["error"]
    event = letter["event"]
    assert (event["aggregate_id"], event["version"], event["topic"]) == (
        PARKED_ORDER,
        1,
        "orders.order",
    )
    assert event["correlation_id"] is not None
    assert "payload" not in event  # business data stays out unless asked for


def test_payloads_only_when_asked_for(sample) -> None:
    [letter] = consumer(sample(payloads=True), "orders.audit")["dead_letters"]
    assert '"customer_id":"c-alan"' in letter["event"]["payload"].replace(" ", "")


def test_a_reactor_shows_its_pending_deadlines(sample) -> None:
    snapshot = sample()
    deadlines = consumer(snapshot, "orders.cancel_unpaid")["deadlines"]
    unpaid = {oid for oid, _, _, paid in ORDERS if not paid}
    assert deadlines["count"] == len(unpaid)
    assert {d["key"] for d in deadlines["items"]} == unpaid
    assert {d["name"] for d in deadlines["items"]} == {"cancel-unpaid-order"}
    assert consumer(snapshot, "orders.summary")["deadlines"] is None  # not a reactor


def test_recent_events_come_newest_first_and_carry_correlation_ids(scene, sample) -> None:
    events = sample(tail=100)["events"]
    assert len(events) == sum(scene.count(ctx) for ctx in scene.urls)  # all there are
    stamps = [(e["occurred_at"], e["position"]) for e in events]
    assert stamps == sorted(stamps, reverse=True)
    # A shipment made by shipping's reactor carries the correlation id of
    # the order whose payment caused it, across contexts.
    paid = {
        e["aggregate_id"]: e["correlation_id"] for e in events if e["event_type"] == "OrderPaid"
    }
    shipments = [e for e in events if e["event_type"] == "ShipmentCreated"]
    assert shipments
    for shipment in shipments:
        assert shipment["context"] == "shipping"
        assert shipment["correlation_id"] == paid[shipment["aggregate_id"]]


def test_the_tail_is_bounded(sample) -> None:
    events = sample(tail=5)["events"]
    assert len(events) == 5


def test_a_consumer_that_cannot_be_read_shows_why_and_the_others_go_on(scene, tmp_path) -> None:
    module = tmp_path / "elsewhere.py"
    module.write_text(
        "from eventsource import Projection, View, handles\n"
        "from sample_app.orders.events import OrderPlaced\n"
        "class Stock(Projection):\n"
        "    name = 'inventory.stock'\n"
        "    topics = ['inventory.item']\n"
        "    @handles(OrderPlaced)\n"
        "    def _placed(self, event: OrderPlaced, view: View) -> None: ...\n"
    )
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        sources = open_sources(
            scene, ["elsewhere:Stock", "orders=tests.dashboard.scene:OrderAudit"]
        )
    finally:
        sys.path.remove(str(tmp_path))
    with Sampler(sources) as sampler:
        snapshot = sampler.sample()
    stock = consumer(snapshot, "inventory.stock")
    assert "'inventory' whose event store is not configured" in stock["error"].replace(",", "")
    assert consumer(snapshot, "orders.audit")["error"] is None
    assert consumer(snapshot, "orders.audit")["parked"] == 1


def test_sampling_writes_nothing_and_the_engines_refuse_writes(scene, sample) -> None:
    def fingerprint() -> dict[str, str]:
        files = sorted(scene.data.glob("*.db"))
        return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}

    before = fingerprint()
    for _ in range(3):
        sample()
    assert fingerprint() == before
    # Readers of a WAL database open its -wal and -shm files; nothing is written to the log.
    assert all(wal.stat().st_size == 0 for wal in scene.data.glob("*.db-wal"))
    sources = open_sources(scene)
    try:
        with (
            pytest.raises(StoreError, match="readonly"),
            sources.stores["orders"].engine.begin() as conn,
        ):
            conn.execute(text("DELETE FROM projection_positions"))
    finally:
        sources.close()


def test_history_gives_a_lag_series_and_throughput(scene) -> None:
    sampler = Sampler(open_sources(scene), interval=0.5)
    try:
        for _ in range(3):
            sampler.sample()
        found = consumer(sampler.sample(), "payments.card_attempts")
    finally:
        sampler.close()
    assert [lag for _, lag in found["lag_history"]] == [18] * 4
    assert found["throughput"] == 0.0  # no worker ran while it watched


def test_a_transform_on_the_embedded_log_shows_as_its_reactor_does(scene, sample) -> None:
    alerts = consumer(sample(), "payments.card_alerts")
    assert alerts["error"] is None, alerts["error"]
    assert (alerts["kind"], alerts["context"]) == ("transform", "payments")
    assert alerts["output"] == "payments.card_alerts"
    assert alerts["status"] == "stopped"  # it ran until caught up and left
    assert alerts["lag_events"] == 0
    [position] = alerts["partitions"]
    assert position["topic"] == "payments.payment"
    assert position["lag_events"] == 0
    assert position["offset"] > 0
    assert alerts["dead_letters"] == []
    assert alerts["deadlines"] is None
    # What it wrote: one card alert per declined attempt.
    assert scene.count("payments", "card_alerts") > 0


def test_a_transform_that_never_ran_lags_by_every_event_it_reads(scene) -> None:
    # The sample app's transform under another name: it starts from offset zero.
    fresh = declined.to("payments.card_alerts_again", name="payments.card_alerts_again")
    sources = open_sources(scene, [])
    sources.watched.append(WatchedTransform(fresh))
    sampler = Sampler(sources, interval=0.5)
    try:
        for _ in range(2):
            sampler.sample()
        [found] = sampler.sample()["consumers"]
    finally:
        sampler.close()
    assert (found["status"], found["kind"]) == ("never run", "transform")
    assert found["lag_events"] == scene.count("payments", "payment") == 18
    assert [lag for _, lag in found["lag_history"]] == [18] * 3
    assert found["throughput"] == 0.0
