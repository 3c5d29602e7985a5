"""Payments' `card_alerts` transform: declined attempts, re-keyed by card, on
`payments.card_alerts`, and `DeclinedCards` folding them; on the embedded
log and on Kafka."""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select

from eventsource import EventStore, Repository, Runtime, Settings, run_workers
from eventsource.bus.admin import TopicAdmin
from eventsource.bus.config import KafkaConfig
from eventsource.bus.kafka import KafkaLogConsumer
from eventsource.bus.relay import Relay
from eventsource.projections.worker import Worker
from eventsource.store.engine import create_engine, read_transaction
from eventsource.streams.kafka import TransformRunner
from eventsource.streams.runtime import embedded_worker
from eventsource.testing import given, stream
from sample_app.payments.alerts import card_alerts
from sample_app.payments.domain import Payment
from sample_app.payments.events import AuthorizationAttempted, CardDeclined
from sample_app.payments.views import DeclinedCards
from tests.bus.model import read_committed
from tests.conftest import unique

TEN = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
VISA = "4111111111111111"
AMEX = "340000000000009"
# (payment id, card, minutes after ten, approved?), saved in this order.
ATTEMPTS = [
    ("pay-1", VISA, 0.0, False),
    ("pay-2", AMEX, 0.5, True),
    ("pay-3", VISA, 1.0, False),
    ("pay-4", AMEX, 2.0, False),
    ("pay-5", VISA, 3.0, True),
    ("pay-6", VISA, 4.0, False),
]
# What `payments_declined_cards` must hold: card -> (declines, last payment id).
DECLINED = {VISA: (3, "pay-6"), AMEX: (1, "pay-4")}


def attempted(card: str, minutes: float, *, approved: bool) -> AuthorizationAttempted:
    return AuthorizationAttempted(
        card_number=card,
        amount=Decimal("49.00"),
        approved=approved,
        attempted_at=TEN + timedelta(minutes=minutes),
    )


def record_attempts(store: EventStore) -> None:
    payments = Repository(store, Payment)
    for payment_id, card, minutes, approved in ATTEMPTS:
        payment = Payment(payment_id)
        payment.attempt(card, Decimal("49.00"), TEN + timedelta(minutes=minutes), approved=approved)
        payments.save(payment)


def declined_rows(engine) -> dict[str, tuple[int, str]]:
    with read_transaction(engine) as conn:
        rows = conn.execute(select(DeclinedCards.declines)).mappings().all()
    return {r["card_number"]: (r["declines"], r["last_payment_id"]) for r in rows}


def test_a_declined_attempt_becomes_an_alert_keyed_by_its_card() -> None:
    event = attempted(VISA, 2, approved=False)
    [(key, alert)] = card_alerts.apply("payments.payment", event)
    assert key == VISA
    assert alert == CardDeclined(
        card_number=VISA,
        amount=Decimal("49.00"),
        payment_id=event.aggregate_id,
        declined_at=TEN + timedelta(minutes=2),
    )
    assert card_alerts.apply("payments.payment", attempted(VISA, 2, approved=True)) == []
    assert card_alerts.topics == ["payments.payment"]
    assert card_alerts.output == "payments.card_alerts"


# -- embedded -------------------------------------------------------------------------


@pytest.fixture
def embedded(tmp_path: Path) -> Settings:
    url = f"sqlite:///{tmp_path / 'payments.db'}"
    settings = Settings(database_url=url, context="payments", kafka_bootstrap_servers=None)
    with EventStore(url, context="payments") as store:
        store.create_schema()
        record_attempts(store)
    return settings


def declined(card: str, payment_id: str, minutes: float) -> CardDeclined:
    return CardDeclined(
        card_number=card,
        amount=Decimal("49.00"),
        payment_id=payment_id,
        declined_at=TEN + timedelta(minutes=minutes),
    )


def test_the_last_decline_is_the_latest_in_time_whatever_order_alerts_arrive() -> None:
    # On Kafka, alerts from attempts on different input partitions interleave
    # in the order the transform read them.
    scenario = given(
        DeclinedCards,
        stream(
            "card_alerts",
            VISA,
            declined(VISA, "pay-3", 1),
            declined(VISA, "pay-6", 4),
            declined(VISA, "pay-1", 0),
            context="payments",
        ),
    )
    scenario.then_rows(
        DeclinedCards.declines,
        [
            {
                "card_number": VISA,
                "declines": 3,
                "last_payment_id": "pay-6",
                "last_declined_at": TEN + timedelta(minutes=4),
            }
        ],
    )


def test_embedded_alerts_are_appended_to_the_payments_store_once(embedded: Settings) -> None:
    with Runtime(embedded) as runtime:
        for _ in range(2):  # a second run finds nothing new to write
            worker = embedded_worker(card_alerts, runtime, batch_size=4)
            run_workers([worker], stop=threading.Event(), until_caught_up=True, lag_interval=0)
        alerts = [e for e in runtime.store().read_events() if isinstance(e, CardDeclined)]
        causes = {e.aggregate_id: e for e in runtime.store().read_events()}
    by_card: dict[str, list[str]] = defaultdict(list)
    for alert in alerts:
        assert alert.aggregate_type == "card_alerts"
        assert alert.aggregate_id == alert.card_number
        cause = causes[alert.payment_id]
        assert alert.causation_id == cause.event_id
        assert alert.occurred_at == cause.occurred_at
        by_card[alert.aggregate_id].append(alert.payment_id)
    # One stream per card, in the order of the attempts.
    assert dict(by_card) == {VISA: ["pay-1", "pay-3", "pay-6"], AMEX: ["pay-4"]}
    versions: dict[str, list[int]] = defaultdict(list)
    for alert in alerts:
        versions[alert.aggregate_id].append(alert.version)
    assert dict(versions) == {VISA: [1, 2, 3], AMEX: [1]}


def test_embedded_declined_cards_folds_the_alerts(embedded: Settings) -> None:
    with Runtime(embedded) as runtime:
        workers = [
            embedded_worker(card_alerts, runtime, batch_size=100),
            runtime.worker(DeclinedCards),
        ]
        for worker in workers:  # the transform first: the projection reads its output
            run_workers([worker], stop=threading.Event(), until_caught_up=True, lag_interval=0)
        assert declined_rows(runtime.store().engine) == DECLINED


# -- Kafka ----------------------------------------------------------------------------


@pytest.fixture
def on_kafka(kafka_servers: str, tmp_path: Path) -> Iterator[tuple[EventStore, KafkaConfig]]:
    kafka = KafkaConfig(kafka_servers, partitions=3, topic_prefix=f"{unique('alerts')}.")
    store = EventStore(f"sqlite:///{tmp_path / 'payments.db'}", context="payments")
    store.create_schema()
    record_attempts(store)
    with Relay(store, kafka) as relay:
        relay.run(until_caught_up=True)
    yield store, kafka
    store.close()
    admin = TopicAdmin(kafka)
    admin.delete(admin.list_topics(kafka.topic_prefix))


@pytest.mark.kafka
def test_on_kafka_each_declined_attempt_is_one_alert_in_its_cards_partition(
    on_kafka: tuple[EventStore, KafkaConfig],
) -> None:
    store, kafka = on_kafka
    for _ in range(2):  # a second run starts at the committed offsets: nothing twice
        with TransformRunner(card_alerts, kafka, batch_size=4) as runner:
            runner.run(until_caught_up=True)
    causes = {e.event_id: e for e in store.read_events()}
    # Where each attempt sits in `payments.payment`: (partition, offset).
    inputs = read_committed(kafka.bootstrap_servers, [kafka.physical("payments.payment")])
    placed = {uuid.UUID(m.headers["es-event-id"].decode()): (m.partition, m.offset) for m in inputs}
    delivered = read_committed(kafka.bootstrap_servers, [kafka.physical("payments.card_alerts")])
    by_card: dict[str, list[tuple[int, str]]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    # card -> input partition -> the input offsets of its alerts, in output order.
    read_order: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for d in sorted(delivered, key=lambda d: (d.partition, d.offset)):
        value = orjson.loads(d.value or b"{}")
        assert d.key == value["card_number"].encode() == d.headers["es-aggregate-id"]
        assert d.headers["es-event-type"] == b"CardDeclined"
        cause_id = uuid.UUID(d.headers["es-causation-id"].decode())
        assert causes[cause_id].aggregate_id == value["payment_id"]
        by_card[value["card_number"]].append((d.offset, value["payment_id"]))
        partitions[value["card_number"]].add(d.partition)
        partition, offset = placed[cause_id]
        read_order[value["card_number"]][partition].append(offset)
    assert {card: len(p) for card, p in partitions.items()} == {VISA: 1, AMEX: 1}
    assert {card: sorted(p for _, p in items) for card, items in by_card.items()} == {
        VISA: ["pay-1", "pay-3", "pay-6"],
        AMEX: ["pay-4"],
    }
    # Each card's alerts keep the order of their input partition; alerts from
    # different input partitions interleave as the transform read them.
    for card, per_partition in read_order.items():
        for partition, offsets in per_partition.items():
            assert offsets == sorted(offsets), (card, partition, offsets)


@pytest.mark.kafka
def test_on_kafka_declined_cards_folds_the_alerts(
    on_kafka: tuple[EventStore, KafkaConfig], tmp_path: Path
) -> None:
    _, kafka = on_kafka
    with TransformRunner(card_alerts, kafka) as runner:
        runner.run(until_caught_up=True)
    views = create_engine(f"sqlite:///{tmp_path / 'views.db'}")
    log = KafkaLogConsumer(kafka, group_id=unique("declined-cards"))
    worker = Worker(DeclinedCards(), log, engine=views)
    try:
        worker.run(until_caught_up=True)
    finally:
        worker.close()
    assert declined_rows(views) == DECLINED
    views.dispose()
