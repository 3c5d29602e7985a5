"""A transform's Prometheus metrics, scraped from a running `transform run`."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from eventsource.bus.config import KafkaConfig
from tests.conftest import unique
from tests.observability.test_metrics import eventually, free_port, get, sample
from tests.projections.streams import WorkerProcess
from tests.streams.apps import expected_outputs, record_movements
from tests.streams.conftest import Source

pytestmark = pytest.mark.kafka


@pytest.fixture
def source(source_factory: Callable[..., Source], kafka_config: KafkaConfig) -> Source:
    made = source_factory(kafka_config)
    record_movements(made.store, accounts=10, events=300, seed=5)
    made.publish()
    return made


def test_a_running_transform_serves_metrics_that_move_with_its_input(source: Source) -> None:
    name = unique("st.metrics")
    port = free_port()
    transform = WorkerProcess(
        [
            "transform",
            "run",
            "tests.streams.apps:movements",
            "--batch-size",
            "40",
            "--metrics-port",
            str(port),
        ],
        source.env(name, EVENTSOURCE_HEARTBEAT_SECONDS="0.5"),
        source.directory / "transform.log",
    )
    processed = "eventsource_transform_messages_processed_total"
    produced = "eventsource_transform_records_produced_total"
    try:
        records = source.records()
        eventually(
            lambda: sample(port, processed, transform=name) == len(records), "all input read"
        )
        assert sample(port, produced, transform=name) == len(expected_outputs(records))
        batches = sample(port, "eventsource_transform_batch_duration_seconds_count", transform=name)
        assert batches is not None
        assert batches >= len(records) / 40
        assert get(port, "/healthz")[0] == 200

        more = record_movements(source.store, accounts=3, events=30, seed=6)
        source.publish()
        eventually(
            lambda: sample(port, processed, transform=name) == len(records) + more,
            "the new input read",
        )
        assert sample(port, produced, transform=name) == len(expected_outputs(source.records()))
    finally:
        transform.kill()
