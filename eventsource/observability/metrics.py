"""Prometheus metrics of projection workers, reactors and relays.

Each set of metrics is registered on a `CollectorRegistry`: the command's
own (served on `--metrics-port`), or an application's, when it runs workers
in its own process::

    from prometheus_client import CollectorRegistry
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    Worker(MyProjection(), log, engine=engine, metrics=metrics)

Names follow Prometheus conventions: counters end in `_total`, times are
in seconds; every series of a worker carries its `projection` label (the
consumer's name), every series of a relay its `context`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Batches take from milliseconds (a few events into SQLite) to seconds.
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class WorkerMetrics:
    """The metrics of projections and reactors (one set serves many workers)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.registry = registry
        label = ["projection"]
        self.applied = Counter(
            "eventsource_events_applied",
            "Messages a projection or reactor applied (handled or skipped as unwanted).",
            label,
            registry=registry,
        )
        self.batches = Counter(
            "eventsource_batches", "Batches committed.", label, registry=registry
        )
        self.batch_seconds = Histogram(
            "eventsource_batch_duration_seconds",
            "Time to poll, fold and commit one batch.",
            label,
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.lag_messages = Gauge(
            "eventsource_lag_messages",
            "Messages between the positions applied and the end of the log"
            " (on Kafka transaction markers count too).",
            label,
            registry=registry,
        )
        self.lag_seconds = Gauge(
            "eventsource_lag_seconds",
            "How old the last applied event is while messages wait (0 when caught up).",
            label,
            registry=registry,
        )
        self.dead_letters = Gauge(
            "eventsource_dead_letters",
            "Dead letters waiting for a replay or a skip, by status (parked, blocked, stopped).",
            [*label, "status"],
            registry=registry,
        )
        self.deadlines_pending = Gauge(
            "eventsource_deadlines_pending",
            "Deadlines scheduled, not run yet.",
            label,
            registry=registry,
        )
        self.deadlines_fired = Counter(
            "eventsource_deadlines_fired", "Deadlines run.", label, registry=registry
        )
        self.restarts = Counter(
            "eventsource_worker_starts",
            "Times a worker started running.",
            label,
            registry=registry,
        )
        self.last_error = Gauge(
            "eventsource_last_error_timestamp_seconds",
            "When the worker last met an error (a handler's, or an outage), Unix time.",
            label,
            registry=registry,
        )
        self.retrying = Gauge(
            "eventsource_retrying",
            "1 while the worker waits for its database or broker to come back.",
            label,
            registry=registry,
        )


class RelayMetrics:
    """The metrics of a relay."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.registry = registry
        label = ["context"]
        self.published = Counter(
            "eventsource_relay_events_published",
            "Events published to Kafka.",
            label,
            registry=registry,
        )
        self.committed = Counter(
            "eventsource_relay_transactions_committed",
            "Kafka transactions committed.",
            label,
            registry=registry,
        )
        self.aborted = Counter(
            "eventsource_relay_transactions_aborted",
            "Kafka transactions aborted (their batch is sent again).",
            label,
            registry=registry,
        )
        self.lag_events = Gauge(
            "eventsource_relay_lag_events",
            "Positions between what Kafka holds and the store's head.",
            label,
            registry=registry,
        )
        self.fenced = Counter(
            "eventsource_relay_fenced",
            "Times the relay was fenced by another.",
            label,
            registry=registry,
        )
        self.retrying = Gauge(
            "eventsource_relay_retrying",
            "1 while the relay waits for its store or Kafka to come back.",
            label,
            registry=registry,
        )
