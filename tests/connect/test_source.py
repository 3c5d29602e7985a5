"""A Kafka Connect source feeding a projection: Apache Kafka's
`FileStreamSourceConnector` turns the lines of a file (JSON, as another system
would write them) into records of a topic, and an eventsource projection reads
that foreign topic into a SQL view."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, select

from eventsource import Event, ForeignTopic, Projection, View, handles
from eventsource.bus.config import KafkaConfig
from eventsource.bus.kafka import KafkaLogConsumer
from eventsource.projections import deadletters
from eventsource.projections.worker import Worker
from eventsource.store.engine import create_engine
from tests.bus.model import Delivered, read_committed
from tests.conftest import unique
from tests.connect.configs import FILE_SOURCE, filled
from tests.connect.conftest import Connect

pytestmark = pytest.mark.kafka

metadata = MetaData()
stock = Table(
    "cn_stock_levels",
    metadata,
    Column("sku", String(100), primary_key=True),
    Column("warehouse", String(100), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("counted_at", DateTime(timezone=True), nullable=False),
    Column("counts", Integer, nullable=False),
)


class CnStockCounted(Event):
    """A stock count as the warehouse system writes it: one JSON line."""

    event_type = "cn.stock_counted"

    warehouse: str
    quantity: int


def count(sku: str, quantity: int, minute: int) -> dict[str, object]:
    at = datetime(2026, 6, 1, 8, minute, tzinfo=UTC)
    return {"sku": sku, "warehouse": "north", "quantity": quantity, "at": at.isoformat()}


COUNTS = [count(f"sku-{i % 5}", 10 * i, i) for i in range(15)]


def wait_for_records(servers: str, topic: str, wanted: int) -> list[Delivered]:
    deadline = time.monotonic() + 60
    while True:
        records = read_committed(servers, [topic])
        if len(records) >= wanted:
            return records
        assert time.monotonic() < deadline, f"{len(records)} of {wanted} records on {topic}"
        time.sleep(0.3)


def test_a_projection_folds_what_a_file_source_ingests(
    connect: Connect,
    create_connector: Callable[[str, dict[str, str]], str],
    kafka_config: KafkaConfig,
    kafka_context: str,
    tmp_path: Path,
) -> None:
    servers = kafka_config.bootstrap_servers
    topic = f"{kafka_context}.warehouse-counts"
    # One partition: unkeyed records keep the file's order only in one.
    admin = AdminClient({"bootstrap.servers": servers})
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(30)
    lines = [orjson.dumps(c).decode() for c in COUNTS] + ['{"sku": "sku-x", "warehouse"']
    file = tmp_path / "counts.jsonl"
    file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    name = create_connector("source", filled(FILE_SOURCE, file=str(file), topic=topic))
    connect.wait_running(name)
    records = wait_for_records(servers, topic, len(lines))
    assert [r.value for r in records] == [line.encode() for line in lines]

    counts = ForeignTopic(topic, CnStockCounted, key="sku", time="at")

    class StockLevels(Projection):
        name = unique("cn.stock")
        topics = [counts]
        on_failure = "park"
        levels = stock

        @handles(CnStockCounted)
        def _counted(self, event: CnStockCounted, view: View) -> None:
            row = view.get(self.levels, event.aggregate_id)
            view.upsert(
                self.levels,
                sku=event.aggregate_id,
                warehouse=event.warehouse,
                quantity=event.quantity,
                counted_at=event.occurred_at,
                counts=(row["counts"] if row else 0) + 1,
            )

    views = create_engine(f"sqlite:///{tmp_path / 'views.db'}")
    worker = Worker(
        StockLevels(), KafkaLogConsumer(kafka_config, group_id=unique("g")), engine=views
    )
    try:
        worker.run(until_caught_up=True)
    finally:
        worker.close()
    with views.connect() as conn:
        rows = {r.sku: r._asdict() for r in conn.execute(select(stock))}
        letters = deadletters.waiting(conn, StockLevels.name)
    views.dispose()
    last = {str(c["sku"]): c for c in COUNTS}  # the file's last count of each sku
    assert set(rows) == set(last)
    for sku, value in last.items():
        row = rows[sku]
        assert (row["warehouse"], row["quantity"]) == (value["warehouse"], value["quantity"])
        at = row["counted_at"].replace(tzinfo=row["counted_at"].tzinfo or UTC)
        assert at == datetime.fromisoformat(str(value["at"]))
        assert row["counts"] == 3
    # The cut-off line is parked with its error, not dropped and not folded.
    assert len(letters) == 1
    assert "JSON" in letters[0].error
