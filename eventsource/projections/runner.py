"""Running projections and reactors from configuration, one thread each.

A process runs the consumers of one bounded context: their views (and a
reactor's new events) go to the context's database, `EVENTSOURCE_DATABASE_URL`.
The log is Kafka when `EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS` is set; otherwise
the embedded SQL log, where a topic `<context>.<type>` is read from the store
of `<context>`: the process's own store, or one named in `EVENTSOURCE_STORES`.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING

from apscheduler.schedulers.background import BackgroundScheduler

if TYPE_CHECKING:
    from eventsource.bus.config import KafkaConfig

from eventsource.bus.base import LogConsumer
from eventsource.errors import ConfigurationError
from eventsource.identity import Identity
from eventsource.observability.metrics import WorkerMetrics
from eventsource.projections.base import Consumer, Reactor
from eventsource.projections.worker import BatchStats, Worker
from eventsource.settings import Settings
from eventsource.store.eventstore import EventStore

log = logging.getLogger(__name__)


def load_class(path: str, *, transforms: bool = False) -> type[Consumer]:
    """The projection or reactor class named `package.module:Class`.

    With `transforms`, a transform's name gives the reactor that runs it on
    the embedded log (whose dead letters it keeps).
    """
    module_name, colon, attribute = path.partition(":")
    if not colon or not module_name or not attribute:
        raise ConfigurationError(f"{path!r} is not an import path of the form package.module:Class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        looked = os.pathsep.join(p or "." for p in sys.path[:1])
        raise ConfigurationError(
            f"cannot import {module_name!r} for {path!r}: {exc} (looked in {looked} and the"
            " installed packages; run from your app's folder, pass --app-dir, or set PYTHONPATH)"
        ) from exc
    found = module
    for part in attribute.split("."):
        found = getattr(found, part, None)  # type: ignore[assignment]
        if found is None:
            raise ConfigurationError(f"{module_name!r} has no {attribute!r}")
    from eventsource.streams.topology import Transform

    if isinstance(found, Transform):
        if transforms:
            from eventsource.streams.embedded import reactor_for

            return reactor_for(found, found.context)
        raise ConfigurationError(
            f"{path!r} is a transform: run it with `eventsource transform run`, see it with"
            " `eventsource transform status`"
        )
    if not (isinstance(found, type) and issubclass(found, Consumer)):
        raise ConfigurationError(f"{path!r} is not a Projection or Reactor subclass")
    return found


def group_id(name: str, prefix: str = "") -> str:
    """The Kafka consumer group that spreads a consumer's partitions over its workers.

    The topic prefix isolates environments on one cluster: staging's workers
    never join production's group.
    """
    return f"{prefix}eventsource.{name}"


class Runtime:
    """The stores and logs of one process, built from settings and closed together."""

    def __init__(self, settings: Settings | None = None, *, read_only: bool = False) -> None:
        self.settings = settings or Settings()
        # Read-only: a store's database must exist already (SQLite would
        # create an empty file on connecting).
        self.read_only = read_only
        self.identity = Identity.of_this_process(self.settings.worker_name)
        self._stores: dict[str, EventStore] = {}
        self._logs: list[LogConsumer] = []

    def __enter__(self) -> Runtime:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def store(self, context: str | None = None) -> EventStore:
        """The event store of `context` (default: this process's own)."""
        context = context or self.settings.context
        found = self._stores.get(context)
        if found is None:
            urls = self.settings.store_urls()
            if context not in urls:
                raise ConfigurationError(
                    f"no database is configured for context {context!r}; set EVENTSOURCE_STORES"
                )
            if self.read_only:
                _require_existing(urls[context])
            found = self._stores[context] = EventStore(
                urls[context],
                context=context,
                # Other contexts' keys of personal data: from these settings,
                # not the environment's (a Settings object built in code).
                keys={**self.settings.store_urls(), **self.settings.keys},
                keys_cache_seconds=self.settings.keys_cache_seconds,
            )
        return found

    def kafka_config(self) -> KafkaConfig | None:
        """The Kafka settings, or None in embedded mode."""
        if self.settings.embedded:
            return None
        from eventsource.bus.config import KafkaConfig

        return KafkaConfig.from_settings(self.settings)

    def log(self, name: str) -> LogConsumer:
        """A fresh log consumer for the consumer called `name` (its Kafka group)."""
        consumer: LogConsumer
        if self.settings.embedded:
            from eventsource.bus.sqllog import SqlLogConsumer

            stores = {ctx: self.store(ctx) for ctx in self.settings.store_urls()}
            consumer = SqlLogConsumer(stores)
        else:
            from eventsource.bus.config import KafkaConfig
            from eventsource.bus.kafka import KafkaLogConsumer

            options: dict[str, str] = {"client.id": self.identity.name}
            if self.settings.worker_name:
                options["group.instance.id"] = self.settings.worker_name
            consumer = KafkaLogConsumer(
                KafkaConfig.from_settings(self.settings),
                group_id=group_id(name, self.settings.topic_prefix),
                **options,
            )
        self._logs.append(consumer)
        return consumer

    def worker(
        self,
        cls: type[Consumer],
        *,
        batch_size: int | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> Worker:
        """A worker for `cls` in this process's context."""
        own = self.store()
        log_consumer = self.log(cls.name)
        return Worker(
            cls(),
            log_consumer,
            store=own if issubclass(cls, Reactor) else None,
            engine=None if issubclass(cls, Reactor) else own.engine,
            codec=own.codec,
            batch_size=batch_size,
            identity=self.identity,
            heartbeat_seconds=self.settings.heartbeat_seconds,
            metrics=metrics,
        )

    def close(self) -> None:
        """Close every log consumer and store this runtime opened."""
        for consumer in self._logs:
            consumer.close()
        for store in self._stores.values():
            store.close()
        self._logs.clear()
        self._stores.clear()


def run_workers(
    workers: Sequence[Worker],
    *,
    stop: threading.Event,
    until_caught_up: bool = False,
    on_batch: Callable[[Worker, BatchStats], None] | None = None,
    deadline_interval: float = 1.0,
    lag_interval: float = 30.0,
) -> None:
    """Run each worker in its own thread until `stop`; re-raise the first failure.

    When one worker fails the others finish their batch and stop too, so a
    process never keeps running half of its consumers unnoticed.
    """
    errors: list[BaseException] = []
    lock = threading.Lock()

    def target(worker: Worker) -> None:
        try:
            worker.run(stop=stop, until_caught_up=until_caught_up, on_batch=on_batch)
        except BaseException as exc:
            with lock:
                errors.append(exc)
            stop.set()

    threads = [
        threading.Thread(target=target, args=(w,), name=f"worker-{w.name}", daemon=True)
        for w in workers
    ]
    scheduler = periodic_work(
        workers, deadline_interval=deadline_interval, lag_interval=lag_interval
    )
    scheduler.start()
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
    finally:
        scheduler.shutdown(wait=True)
    if errors:
        raise errors[0]


def periodic_work(
    workers: Sequence[Worker], *, deadline_interval: float = 1.0, lag_interval: float = 30.0
) -> BackgroundScheduler:
    """An APScheduler as the workers' clock: due deadlines and lag reports.

    Its jobs only queue work for each worker, which runs it on its own thread
    between batches (the worker's consumer and connections are its own).
    Deadlines are polled from their table, so their due times survive
    restarts; the scheduler itself holds nothing that a restart could lose.
    """
    scheduler = BackgroundScheduler(timezone="UTC")
    for worker in workers:
        if type(worker.consumer)._deadlines:
            scheduler.add_job(
                _wake_for_deadlines(worker),
                "interval",
                seconds=deadline_interval,
                max_instances=1,
                coalesce=True,
                id=f"deadlines:{worker.name}",
            )
    if lag_interval > 0:
        for worker in workers:
            scheduler.add_job(
                worker.request_lag_report,
                "interval",
                seconds=lag_interval,
                max_instances=1,
                coalesce=True,
                id=f"lag:{worker.name}",
            )
    return scheduler


def _wake_for_deadlines(worker: Worker) -> Callable[[], None]:
    """The scheduler's tick: the worker fires its deadlines on its own thread."""

    def wake() -> None:
        future = worker.request_deadlines()
        if future is not None:
            future.add_done_callback(_log_failure)

    def _log_failure(future: Future[int]) -> None:
        error = future.exception()
        if error is not None:
            # The next tick tries again; the failure must be seen.
            log.warning("deadlines of %s %s failed: %s", worker.kind, worker.name, error)

    return wake


def _require_existing(url: str) -> None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    if not os.path.exists(parsed.database):
        raise ConfigurationError(
            f"no database at {parsed.database}; check the URL (EVENTSOURCE_DATABASE_URL,"
            " EVENTSOURCE_STORES or the command's options)"
        )
