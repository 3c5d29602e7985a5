"""The relay: moves a store's events to Kafka, exactly once, in global order.

How it knows where it stopped: it keeps no bookkeeping of its own. Every
message carries its global position in a header, and the relay publishes in
global order inside Kafka transactions, one transaction per batch. So after
a crash, once `init_transactions()` has aborted whatever transaction the dead
relay left open, the highest position among the last committed messages of
the context's partitions is exactly the last event relayed; everything at or
below it is on Kafka, nothing above it is.

Two relays of one store share a `transactional.id`: the newer one fences the
older, whose open transaction is aborted and which stops with `RelayFenced`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from sqlalchemy.exc import DBAPIError

from eventsource.bus import relay_status
from eventsource.bus.admin import TopicAdmin
from eventsource.bus.config import ClientErrors, KafkaConfig, kafka_error
from eventsource.bus.kafka import last_committed
from eventsource.bus.outbox import OutgoingMessage, read_messages
from eventsource.bus.wire import H_TRACEPARENT
from eventsource.errors import (
    BrokerUnavailable,
    BusError,
    KafkaAuthenticationError,
    RelayFenced,
    StoreError,
    StoreMismatch,
    TopicConfigError,
)
from eventsource.events.notices import NOTICE_AGGREGATE_TYPE
from eventsource.identity import Identity
from eventsource.observability import tracing
from eventsource.observability.metrics import RelayMetrics
from eventsource.retry import RetryPolicy, is_transient
from eventsource.store.eventstore import EventStore

log = logging.getLogger(__name__)

_TIMEOUT = 30.0
# init_transactions waits this long per try: a refused login shows between tries.
_INIT_TIMEOUT = 5.0
_FENCED = {
    KafkaError._FENCED,
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_PRODUCER_EPOCH,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
}


@dataclass(frozen=True, slots=True)
class RelayProgress:
    relayed: int
    position: int
    head: int

    @property
    def lag(self) -> int:
        """Upper bound of events still to relay (positions may have gaps)."""
        return max(0, self.head - self.position)


ProgressCallback = Callable[[RelayProgress], None]


class Relay:
    """Publishes a store's events to its Kafka topics.

    ::

        with Relay(store, KafkaConfig("localhost:9092")) as relay:
            relay.run(stop=stop_event)

    `transactional_id` defaults to `eventsource-relay.<context>`: one relay per
    store is active at a time, and starting a second one fences the first.
    """

    def __init__(
        self,
        store: EventStore,
        kafka: KafkaConfig,
        *,
        transactional_id: str | None = None,
        batch_size: int = 5000,
        poll_interval: float = 0.1,
        max_backoff: float = 10.0,
        stop: threading.Event | None = None,
        timeout: float | None = None,
        identity: Identity | None = None,
        heartbeat_seconds: float = relay_status.HEARTBEAT_SECONDS,
        metrics: RelayMetrics | None = None,
    ) -> None:
        self.store = store
        self.kafka = kafka
        # The prefix isolates environments on one cluster: staging's relay
        # must never fence production's.
        self.transactional_id = transactional_id or kafka.physical(
            f"eventsource-relay.{store.context}"
        )
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.admin = TopicAdmin(kafka)
        # Every call to the store or the broker waits out an outage here; a
        # `timeout` bounds each outage (one-shot runs), `stop` ends the wait.
        self.retry = RetryPolicy(
            f"relay {store.context}", stop=stop, cap=max_backoff, deadline=timeout, logger=log
        )
        self.identity = identity or Identity.of_this_process()
        self.metrics = metrics
        # Monotonic time the loop last went round (health checks); made counts.
        self.last_loop = time.monotonic()
        self.heartbeat_seconds = heartbeat_seconds
        self._beaten = 0.0
        self.position = 0
        self.relayed = 0
        self._producer: Producer | None = None
        self._errors = ClientErrors(f"relay {self.transactional_id}")
        self._executor: ThreadPoolExecutor | None = None
        self._ahead: tuple[int, Future[list[OutgoingMessage]]] | None = None

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading ahead and flush the producer's queue (what `with` does on exit)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
            self._ahead = None
        if self._producer is not None:
            self._producer.flush(5)
            self._producer = None

    # -- start-up --------------------------------------------------------------

    def start(self) -> int:
        """Check that the topics are this store's, fence any older relay, then
        find the last event already on Kafka."""
        self.check_store()
        self._errors = ClientErrors(f"relay {self.transactional_id}")
        producer = Producer(self.kafka.producer(self.transactional_id, error_cb=self._errors))
        self._call(
            producer, lambda: producer.init_transactions(_INIT_TIMEOUT), "initialise transactions"
        )
        self._producer = producer
        self.position = self.retry.call(self._recover)
        # The topic of the context's forget notices exists before the first
        # notice: consumers (and rebuilds) subscribe to it from their start.
        notices = self.kafka.physical(self.store.topic_for(NOTICE_AGGREGATE_TYPE))
        self.retry.call(lambda: self.admin.ensure({notices}))
        log.info(
            "relay %s for %r resumes after global position %d",
            self.transactional_id,
            self.store.context,
            self.position,
        )
        return self.position

    def _recover(self) -> int:
        return max((position for position, _ in self.tails()), default=0)

    def tails(self) -> list[tuple[int, str | None]]:
        """The last committed event of each of the context's partitions: its
        position and the id of the store that wrote it."""
        topics = self.admin.list_topics(self.kafka.physical(f"{self.store.context}."))
        if not topics:
            return []
        consumer = Consumer(
            self.kafka.consumer(f"eventsource-relay-recovery-{uuid.uuid4().hex[:12]}")
        )
        try:
            return [
                last_committed(consumer, topic, p) for topic, n in topics.items() for p in range(n)
            ]
        finally:
            consumer.close()

    def check_store(self) -> None:
        """Refuse, before anything is fenced, to relay a store into topics that
        another store wrote, or that hold more than this store has.

        A relay pointed at the wrong database (a typo, an implicit default)
        would otherwise fence the live relay of the real store, and compare
        its positions with another store's.
        """
        identity = self.retry.call(self.store.identity)
        head = self.retry.call(self.store.head_position)
        tails = self.retry.call(self.tails)
        found = {store for _, store in tails if store is not None}
        on_kafka = max((position for position, _ in tails), default=0)
        where = f"{self.kafka.physical(self.store.context)}.*"
        others = ", ".join(sorted(found - {identity}))
        if on_kafka > head:
            writer = f" (written by store {others})" if others else ""
            raise StoreMismatch(
                f"topics {where}{writer} hold events up to position {on_kafka}, but"
                f" {self.store!r} (store {identity}) ends at position {head}: it is not the"
                " store that wrote them, or it lost events; nothing was fenced",
                store_id=identity,
                found=found,
                kafka_position=on_kafka,
                head=head,
            )
        if others:
            raise StoreMismatch(
                f"topics {where} were written by store {others}, but this relay reads store"
                f" {identity} ({self.store!r}); nothing was fenced. If the context moved to"
                " this database on purpose, run `eventsource relay adopt`",
                store_id=identity,
                found=found,
                kafka_position=on_kafka,
                head=head,
            )

    # -- relaying --------------------------------------------------------------

    def run(
        self,
        *,
        stop: threading.Event | None = None,
        until_caught_up: bool = False,
        progress: ProgressCallback | None = None,
    ) -> int:
        """Relay until `stop` is set (or, with `until_caught_up`, the store's head
        is on Kafka). Returns how many events this call relayed."""
        if stop is not None:
            self.retry.stop = stop
        stop = self.retry.stop
        if self._producer is None:
            self.start()
        relayed_before = self.relayed
        attempt = 0
        while not stop.is_set():
            self.last_loop = time.monotonic()
            try:
                count = self.relay_batch()
                if progress is not None and (count or until_caught_up):
                    head = self.store.head_position()
                    progress(RelayProgress(self.relayed, self.position, head))
            except Exception as exc:
                if not _passing(exc):
                    raise
                attempt += 1
                self._beat()  # the store may be up while the broker is away: say so
                self.retry.failed(exc, attempt)
                continue
            if attempt:
                attempt = 0
                self.retry.recovered()
            self._beat()
            if count == 0:
                if until_caught_up:
                    break
                stop.wait(self.poll_interval)
        self._leave()
        return self.relayed - relayed_before

    def _beat(self) -> None:
        """Refresh the relay's heartbeat row, when due (best effort: a store
        that is away is the outage being reported already)."""
        now = time.monotonic()
        if now - self._beaten < self.heartbeat_seconds:
            return
        self._beaten = now
        outage = self.retry.outage if self.retry.outage.active else self._errors.outage
        try:
            if self.metrics is not None:
                context = self.store.context
                head = self.store.head_position()
                self.metrics.lag_events.labels(context).set(max(0, head - self.position))
                self.metrics.retrying.labels(context).set(1 if outage.active else 0)
            with self.store.transaction(lock_first=False) as conn:
                relay_status.beat(
                    conn,
                    self.identity,
                    transactional_id=self.transactional_id,
                    position=self.position,
                    relayed=self.relayed,
                    outage=outage,
                )
        except StoreError:
            pass

    def _leave(self) -> None:
        try:
            with self.store.transaction(lock_first=False) as conn:
                relay_status.leave(conn, self.identity)
        except StoreError as exc:
            log.warning("relay: cannot remove its heartbeat: %s", exc)

    def relay_batch(self) -> int:
        """Publish the next batch in one Kafka transaction; return its size."""
        if self._producer is None:
            self.start()
        messages = self._next_messages()
        if not messages:
            return 0
        types = {m.aggregate_type for m in messages}
        self.admin.ensure({self.kafka.physical(self.store.topic_for(t)) for t in types})
        if tracing.active():
            traced = [str(m.headers[H_TRACEPARENT]) for m in messages if H_TRACEPARENT in m.headers]
            attributes = {
                "eventsource.context": self.store.context,
                "eventsource.events": len(messages),
            }
            with tracing.publishing(f"eventsource relay {self.store.context}", traced, attributes):
                self._publish(messages)
        else:
            self._publish(messages)
        self.position = messages[-1].position
        self.relayed += len(messages)
        if self.metrics is not None:
            self.metrics.published.labels(self.store.context).inc(len(messages))
            self.metrics.committed.labels(self.store.context).inc()
        return len(messages)

    def _next_messages(self) -> list[OutgoingMessage]:
        """The batch after `self.position`, read ahead while the last one was committing.

        Waiting for Kafka to acknowledge a transaction leaves the process idle:
        the next batch is read from the store meanwhile. A read-ahead that does
        not start at the current position (a batch failed and is sent again)
        is dropped.
        """
        ahead, self._ahead = self._ahead, None
        try:
            if ahead is not None and ahead[0] == self.position:
                messages = ahead[1].result()
            else:
                messages = read_messages(self.store, self.position, self.batch_size)
        except DBAPIError as exc:
            raise StoreError(f"relay cannot read {self.store!r}: {exc.orig}") from exc
        if len(messages) == self.batch_size:
            after = messages[-1].position
            future = self._reader().submit(read_messages, self.store, after, self.batch_size)
            self._ahead = (after, future)
        return messages

    def _reader(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="relay-read-ahead")
        return self._executor

    def _publish(self, messages: Sequence[OutgoingMessage]) -> None:
        producer = self._producer
        assert producer is not None
        prefix = f"{self.kafka.topic_prefix}{self.store.context}."
        produce = producer.produce
        self._call(producer, producer.begin_transaction, "begin a transaction")
        try:
            for m in messages:
                topic = prefix + m.aggregate_type
                while True:
                    try:
                        produce(topic, m.value, m.key, headers=m.headers, timestamp=m.timestamp)
                        break
                    except BufferError:
                        producer.poll(0.05)  # the local queue is full: let it drain
            self._commit(producer)
        except BusError as exc:
            if isinstance(exc, RelayFenced):
                raise
            self._abort(producer)
            raise
        except KafkaException as exc:
            self._raise_if_fatal(exc)
            self._abort(producer)
            raise BusError(f"relay transaction failed: {exc}") from exc

    def _commit(self, producer: Producer) -> None:
        """Commit, retrying a commit that Kafka did not confirm (never aborting
        it: it may have committed). Stopping meanwhile leaves it open, for
        the next relay's `init_transactions` to finish or abort."""
        attempt = 0
        while True:
            try:
                producer.commit_transaction(_TIMEOUT)
                self._errors.recovered()
                if attempt:
                    self.retry.recovered()
                return
            except KafkaException as exc:
                self._raise_if_fatal(exc)
                error = kafka_error(exc)
                if error.txn_requires_abort():
                    raise BusError(f"Kafka refused the transaction: {error}") from exc
                if not error.retriable():
                    raise BusError(f"cannot commit the transaction: {error}") from exc
                self._check_login(producer)
                attempt += 1
                unconfirmed = BrokerUnavailable(f"commit not confirmed: {error}")
                self.retry.failed(unconfirmed, attempt)

    def _abort(self, producer: Producer) -> None:
        if self.metrics is not None:
            self.metrics.aborted.labels(self.store.context).inc()
        self._call(producer, lambda: producer.abort_transaction(_TIMEOUT), "abort the transaction")

    def _raise_if_fatal(self, exc: KafkaException) -> None:
        error = kafka_error(exc)
        if error.code() in _FENCED:
            self._producer = None
            if self.metrics is not None:
                self.metrics.fenced.labels(self.store.context).inc()
            raise RelayFenced(
                f"relay {self.transactional_id!r} was fenced: another relay with the same"
                " transactional id took over this store; this one stops and its open"
                " transaction is aborted"
            ) from exc
        if error.fatal():
            # The producer is unusable; start over: a new one re-reads where Kafka is.
            self._producer = None
            raise BusError(f"fatal Kafka producer error, restarting the producer: {error}") from exc

    def _check_login(self, producer: Producer) -> None:
        """Raise `KafkaAuthenticationError` if the broker refused the producer's login.

        librdkafka reports it to the error callback, which only runs inside
        `poll` and `flush`: serve it first.
        """
        producer.poll(0)
        self._errors.raise_if_refused("relay")

    def _call(self, producer: Producer, action: Callable[[], object], what: str) -> None:
        """`action()`, retried by the policy while Kafka says it may pass."""

        def attempt() -> None:
            try:
                action()
            except KafkaException as exc:
                self._raise_if_fatal(exc)
                if not kafka_error(exc).retriable():
                    raise BusError(f"relay cannot {what}: {exc}") from exc
                self._check_login(producer)
                raise BrokerUnavailable(f"relay cannot {what}: {kafka_error(exc).str()}") from exc

        self.retry.call(attempt)


def _passing(exc: Exception) -> bool:
    """Whether the relay waits and tries again after `exc`.

    Outages pass, and so do the broker's own failures (a fatal producer
    error restarts the producer); fencing, unsafe topics, a refused login
    and a database that refuses us for good do not.
    """
    if isinstance(exc, RelayFenced | TopicConfigError | KafkaAuthenticationError | StoreMismatch):
        return False
    return is_transient(exc) or isinstance(exc, BusError)
