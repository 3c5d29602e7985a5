"""Prometheus metrics of a transform running on Kafka (`--metrics-port`).

On the embedded log a transform is a reactor, measured by `WorkerMetrics`.
Every series carries the `transform` label (its name).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from eventsource.observability.metrics import BATCH_BUCKETS
from eventsource.streams.kafka import TransformBatch


class TransformMetrics:
    """Messages read, records written, transactions, time per batch."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.registry = registry
        label = ["transform"]
        self.processed = Counter(
            "eventsource_transform_messages_processed",
            "Input messages whose transaction committed.",
            label,
            registry=registry,
        )
        self.produced = Counter(
            "eventsource_transform_records_produced",
            "Output records committed.",
            label,
            registry=registry,
        )
        self.parked = Counter(
            "eventsource_transform_records_parked",
            "Input records written to the dead-letter topic.",
            label,
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "eventsource_transform_batch_duration_seconds",
            "Time to transform and commit one batch.",
            label,
            buckets=BATCH_BUCKETS,
            registry=registry,
        )

    def batch(self, name: str, batch: TransformBatch) -> None:
        """Count one committed batch."""
        self.processed.labels(name).inc(batch.messages)
        self.produced.labels(name).inc(batch.produced)
        self.parked.labels(name).inc(batch.parked)
        self.batch_seconds.labels(name).observe(batch.seconds)
