"""A transform on Kafka: consume, transform and produce in one Kafka transaction.

Each batch is one transaction: the outputs (and dead letters) are produced
in it, and so are the consumer group's offsets of the batch
(`send_offsets_to_transaction`), so outputs and progress commit together or
not at all. After a crash the group's committed offsets are exactly where
the last committed transaction left off: nothing is lost and, since
`read_committed` consumers never see an aborted transaction's records,
nothing is duplicated.

Zombies are fenced twice over:

* by transactional id: it is `eventsource-transform.<name>.<member>`, so a
  restarted process (same member name) fences its predecessor and aborts
  whatever transaction that one left open, at once;
* by the group's generation (KIP-447): the offsets are sent with the
  consumer's group metadata, so a process that lost its partitions in a
  rebalance it missed (a long pause) has its transaction refused; it
  aborts, and reads again from what the group committed.

The offsets carry the last global position applied from each partition as
their metadata, so the duplicate filter by position survives restarts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as KafkaTopicPartition

from eventsource.bus import wire
from eventsource.bus.admin import TopicAdmin
from eventsource.bus.base import LogMessage, StartAt, TopicPartition
from eventsource.bus.config import ClientErrors, KafkaConfig, kafka_error
from eventsource.bus.kafka import KafkaLogConsumer
from eventsource.errors import (
    BrokerUnavailable,
    BusError,
    DecodeError,
    PoisonEvent,
    TransformFenced,
)
from eventsource.events.codec import EventCodec
from eventsource.retry import RetryPolicy, Stopped, is_transient
from eventsource.streams import output
from eventsource.streams.topology import Transform

log = logging.getLogger(__name__)

_TIMEOUT = 30.0
_INIT_TIMEOUT = 5.0
DEFAULT_MEMBER = "default"
_FENCED = {
    KafkaError._FENCED,
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_PRODUCER_EPOCH,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    KafkaError.FENCED_INSTANCE_ID,
}
OutgoingMessage = tuple[str, bytes | None, bytes | None, wire.Headers, int | None]


def group_id(name: str, prefix: str = "") -> str:
    """The consumer group of a transform: its partitions, and its committed offsets."""
    return f"{prefix}eventsource-transform.{name}"


def transactional_id(name: str, member: str | None, prefix: str = "") -> str:
    """The transactional id of one process of a transform."""
    return f"{prefix}eventsource-transform.{name}.{member or DEFAULT_MEMBER}"


@dataclass
class TransformBatch:
    """One batch, transformed: what to produce, and where each partition moves."""

    messages: int
    outgoing: list[OutgoingMessage] = field(default_factory=list)
    offsets: dict[TopicPartition, StartAt] = field(default_factory=dict)
    produced: int = 0
    parked: int = 0
    seconds: float = 0.0  # from the poll to the commit


class TransformRunner:
    """Runs a transform on Kafka, exactly once.

    ::

        with TransformRunner(card_alerts, KafkaConfig("localhost:9092")) as runner:
            runner.run(stop=stop_event)

    `member` names this process among the transform's processes (default
    `default`): it is part of the transactional id, so each process of a
    transform needs its own (`EVENTSOURCE_WORKER_NAME`), and a restarted
    one takes its predecessor's place at once. With `static` it is also
    the consumer's static group membership (`group.instance.id`).
    """

    def __init__(
        self,
        transform: Transform,
        kafka: KafkaConfig,
        *,
        member: str | None = None,
        static: bool = False,
        codec: EventCodec | None = None,
        batch_size: int = 1000,
        poll_timeout: float = 0.2,
        stop: threading.Event | None = None,
        consumer_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.transform = transform
        self.kafka = kafka
        self.member = member or DEFAULT_MEMBER
        self.codec = codec or EventCodec()
        self.batch_size = batch_size
        self.poll_timeout = poll_timeout
        self.transactional_id = transactional_id(transform.name, member, kafka.topic_prefix)
        self.group_id = group_id(transform.name, kafka.topic_prefix)
        options: dict[str, Any] = {"client.id": self.transactional_id, **(consumer_options or {})}
        if static:
            options.setdefault("group.instance.id", self.member)
        self.log = KafkaLogConsumer(kafka, group_id=self.group_id, **options)
        self.admin = TopicAdmin(kafka, client=f"transform {transform.name}")
        self.retry = RetryPolicy(f"transform {transform.name}", stop=stop, logger=log)
        self.processed = 0  # input messages whose batch committed
        self.produced = 0  # output records committed
        self.parked = 0  # dead letters committed
        self.last_loop = time.monotonic()
        self._producer: Producer | None = None
        self._errors = ClientErrors(f"transform {self.transactional_id}")
        self._committed: dict[TopicPartition, StartAt] = {}
        self._wanted: dict[tuple[str, str], bool] = {}
        self._subscribed = False

    def __enter__(self) -> TransformRunner:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.log.close()
        if self._producer is not None:
            self._producer.flush(5)
            self._producer = None

    @property
    def committed(self) -> dict[TopicPartition, StartAt]:
        """Where each assigned partition stands, as of the last commit."""
        return dict(self._committed)

    # -- start-up --------------------------------------------------------------

    def start(self) -> None:
        """Create the output topics, fence older processes of this member, subscribe."""
        topics = [self.transform.output]
        if self.transform.on_failure == "park":
            topics.append(self.transform.dead_letters)
        self.retry.call(lambda: self.admin.ensure(self.kafka.physical(t) for t in topics))
        if self._producer is None:
            self._producer = self._new_producer()
        if not self._subscribed:
            self.log.subscribe(self.transform.topics, self._assigned, self._revoked)
            self._subscribed = True

    def _new_producer(self) -> Producer:
        self._errors = ClientErrors(f"transform {self.transactional_id}")
        producer = Producer(self.kafka.producer(self.transactional_id, error_cb=self._errors))
        self._call(
            producer, lambda: producer.init_transactions(_INIT_TIMEOUT), "initialise transactions"
        )
        log.info(
            "transform %s: producer %s ready (older ones fenced)",
            self.transform.name,
            self.transactional_id,
        )
        return producer

    def _assigned(self, partitions: list[TopicPartition]) -> dict[TopicPartition, StartAt]:
        starts = self.retry.call(lambda: self.log.committed(partitions))
        self._committed.update(starts)
        return starts

    def _revoked(self, partitions: list[TopicPartition]) -> None:
        # Nothing is in flight here: a batch commits before the next poll.
        for tp in partitions:
            self._committed.pop(tp, None)

    # -- running ---------------------------------------------------------------

    def run(
        self,
        *,
        stop: threading.Event | None = None,
        until_caught_up: bool = False,
        on_batch: Callable[[TransformBatch], None] | None = None,
    ) -> int:
        """Transform batches until `stop` is set (or, with `until_caught_up`,
        every assigned partition is read to its end). Returns the number of
        input messages processed. A record that fails with `on_failure =
        "stop"` raises `PoisonEvent`; another process taking this one's
        place raises `TransformFenced`."""
        if stop is not None:
            self.retry.stop = stop
        stop = self.retry.stop
        before = self.processed
        attempt = 0
        try:
            self.retry.call(self.start)
            while not stop.is_set():
                self.last_loop = time.monotonic()
                try:
                    batch = self.step()
                except Exception as exc:
                    if not (is_transient(exc) or _passing(exc)):
                        raise
                    attempt += 1
                    self.retry.failed(exc, attempt)
                    continue
                if attempt:
                    attempt = 0
                    self.retry.recovered()
                if on_batch is not None and batch.messages:
                    on_batch(batch)
                if not batch.messages and until_caught_up and self.log.caught_up():
                    break
        except Stopped:
            pass  # asked to stop while Kafka was away
        return self.processed - before

    def step(self) -> TransformBatch:
        """Poll one batch, transform it and commit it in one transaction."""
        if self._producer is None:
            self.start()
        started = time.monotonic()
        messages = self._owned(self.log.poll(self.batch_size, self.poll_timeout))
        try:
            batch = self.transformed(messages)
        except BaseException:
            self._rewind({m.topic_partition for m in messages})
            raise
        if messages:
            self._commit(batch)
        batch.seconds = time.monotonic() - started
        return batch

    def _owned(self, messages: Sequence[LogMessage]) -> list[LogMessage]:
        """The messages of partitions still held, past what the group committed
        (a rebalance inside the poll may have moved partitions)."""
        held = self._committed
        return [
            m
            for m in messages
            if (start := held.get(m.topic_partition)) is not None and m.offset >= start.offset
        ]

    # -- transforming ----------------------------------------------------------

    def transformed(self, messages: Sequence[LogMessage]) -> TransformBatch:
        """The batch's outputs, dead letters and offsets (nothing produced yet)."""
        batch = TransformBatch(messages=len(messages))
        topic = self.kafka.physical(self.transform.output)
        for message in messages:
            tp = message.topic_partition
            held = batch.offsets.get(tp) or self._committed[tp]
            position = message.record.position if message.record is not None else 0
            batch.offsets[tp] = StartAt(message.offset + 1, max(held.last_position, position))
            try:
                outputs = self._outputs(message)
            except Exception as exc:
                if is_transient(exc):
                    raise
                self._failed(message, exc, batch)
                continue
            for key, value, headers, timestamp in outputs:
                batch.outgoing.append((topic, key, value, headers, timestamp))
            batch.produced += len(outputs)
        return batch

    def _outputs(self, message: LogMessage) -> list[output.Message]:
        record = message.record
        if record is None:
            raise message.error or DecodeError("empty message")
        if not self._reads(message.topic, record.event_type):
            return []
        event = self.codec.decode(record)
        records = self.transform.apply(message.topic, event)
        if not records:
            return []
        max_bytes = self.codec.max_event_bytes
        return [
            output.message(e, max_event_bytes=max_bytes)
            for e in output.stamped(self.transform, records, event)
        ]

    def _reads(self, topic: str, event_type: str) -> bool:
        """Whether events of `event_type` on `topic` go through the transform
        (others, and types this process has no class for, are skipped)."""
        found = self._wanted.get((topic, event_type))
        if found is None:
            cls = self.codec.registry.resolve(event_type)
            if cls is None:
                log.warning(
                    "transform %s skips events of unknown type %r", self.transform.name, event_type
                )
            found = cls is not None and issubclass(cls, self.transform.types(topic))
            self._wanted[topic, event_type] = found
        return found

    def _failed(self, message: LogMessage, exc: Exception, batch: TransformBatch) -> None:
        record = message.record
        if isinstance(exc, DecodeError):
            exc = exc.at(topic=message.topic, partition=message.partition, offset=message.offset)
        if self.transform.on_failure == "stop":
            raise PoisonEvent(
                self.transform.name,
                kind="transform",
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                event_type=record.event_type if record else None,
                event_id=record.event_id if record else None,
                error=exc,
            ) from exc
        log.warning(
            "transform %s parks %s[%d]@%d in %s: %s",
            self.transform.name,
            message.topic,
            message.partition,
            message.offset,
            self.transform.dead_letters,
            exc,
        )
        batch.outgoing.append(_dead_letter(self, message, exc))
        batch.parked += 1

    # -- committing ------------------------------------------------------------

    def _commit(self, batch: TransformBatch) -> None:
        """Produce the batch and commit it with its offsets, in one transaction;
        if it does not commit, abort it and read the batch again."""
        producer = self._producer
        assert producer is not None
        try:
            self._call(producer, producer.begin_transaction, "begin a transaction")
            self._produce(producer, batch.outgoing)
            offsets = [
                KafkaTopicPartition(
                    self.kafka.physical(tp.topic),
                    tp.partition,
                    start.offset,
                    metadata=str(start.last_position),
                )
                for tp, start in batch.offsets.items()
            ]
            producer.send_offsets_to_transaction(offsets, self.log.group_metadata(), _TIMEOUT)
            self._commit_transaction(producer)
        except KafkaException as exc:
            self._raise_if_fenced(exc)
            self._abort(producer, batch)
            raise BatchAborted(f"transform transaction failed: {kafka_error(exc).str()}") from exc
        except BaseException:
            self._abort(producer, batch)
            raise
        self._committed.update(batch.offsets)
        self.processed += batch.messages
        self.produced += batch.produced
        self.parked += batch.parked

    def _produce(self, producer: Producer, outgoing: list[OutgoingMessage]) -> None:
        produce = producer.produce
        for topic, key, value, headers, timestamp in outgoing:
            while True:
                try:
                    if timestamp is None:
                        produce(topic, value, key, headers=headers)
                    else:
                        produce(topic, value, key, headers=headers, timestamp=timestamp)
                    break
                except BufferError:
                    producer.poll(0.05)  # the local queue is full: let it drain

    def _commit_transaction(self, producer: Producer) -> None:
        """Commit, retrying a commit that Kafka did not confirm (never aborting
        it: it may have committed)."""
        attempt = 0
        while True:
            try:
                producer.commit_transaction(_TIMEOUT)
                self._errors.recovered()
                return
            except KafkaException as exc:
                error = kafka_error(exc)
                if error.code() in _FENCED or error.fatal() or error.txn_requires_abort():
                    raise
                if not error.retriable():
                    raise
                producer.poll(0)
                self._errors.raise_if_refused("transform")
                attempt += 1
                self.retry.failed(BrokerUnavailable(f"commit not confirmed: {error}"), attempt)

    def _abort(self, producer: Producer, batch: TransformBatch) -> None:
        """Abort the open transaction (if the producer still can) and go back
        to where the group committed, so that the batch is read again."""
        if self._producer is producer:
            try:
                producer.abort_transaction(_TIMEOUT)
            except KafkaException as exc:
                error = kafka_error(exc)
                if error.code() in _FENCED:
                    self._fenced(exc)
                # The producer cannot go on: a new one's init_transactions aborts for it.
                log.warning("transform %s: abort failed (%s); restarting the producer", self, error)
                self._producer = None
        self._rewind(batch.offsets)

    def _rewind(self, partitions: Iterable[TopicPartition]) -> None:
        """Read `partitions` again from where the group committed them."""
        for tp in partitions:
            start = self._committed.get(tp)
            if start is not None:
                self.log.seek(tp, start)

    def _raise_if_fenced(self, exc: KafkaException) -> None:
        error = kafka_error(exc)
        if error.code() in _FENCED:
            self._fenced(exc)
        if error.fatal():
            # The producer is unusable; a new one's init_transactions aborts what it left.
            self._producer = None

    def _fenced(self, exc: KafkaException) -> None:
        self._producer = None
        raise TransformFenced(
            f"transform {self.transform.name!r}: another process took this one's place"
            f" (transactional id {self.transactional_id!r}, group member {self.member!r});"
            " this one stops and its open transaction is aborted. Each process of a"
            " transform needs its own EVENTSOURCE_WORKER_NAME"
        ) from exc

    def _call(self, producer: Producer, action: Callable[[], object], what: str) -> None:
        """`action()`, retried by the policy while Kafka says it may pass."""

        def attempt() -> None:
            try:
                action()
            except KafkaException as exc:
                self._raise_if_fenced(exc)
                if not kafka_error(exc).retriable():
                    raise BusError(f"transform cannot {what}: {exc}") from exc
                producer.poll(0)
                self._errors.raise_if_refused("transform")
                raise BrokerUnavailable(
                    f"transform cannot {what}: {kafka_error(exc).str()}"
                ) from exc

        self.retry.call(attempt)

    def __str__(self) -> str:
        return f"{self.transform.name} ({self.member})"


class BatchAborted(BusError):
    """A batch's transaction did not commit: it was aborted, and the batch is read again."""


def _passing(exc: Exception) -> bool:
    """Whether the loop waits and tries again after `exc`."""
    return isinstance(exc, BatchAborted)


def _dead_letter(runner: TransformRunner, message: LogMessage, exc: Exception) -> OutgoingMessage:
    """The dead-letter record of `message`: what is known of it, and why it failed.

    Its bytes stay in the input topic; the headers say where.
    """
    record = message.record
    headers: wire.Headers = [
        ("es-dead-letter-transform", runner.transform.name.encode()),
        ("es-dead-letter-topic", message.topic.encode()),
        ("es-dead-letter-partition", str(message.partition).encode()),
        ("es-dead-letter-offset", str(message.offset).encode()),
        ("es-dead-letter-error", f"{type(exc).__name__}: {exc}"[:4000].encode()),
    ]
    if record is not None:
        headers.append(("es-event-type", record.event_type.encode()))
        headers.append(("es-event-id", str(record.event_id).encode()))
    topic = runner.kafka.physical(runner.transform.dead_letters)
    key = record.aggregate_id.encode() if record is not None and record.aggregate_id else None
    value = record.payload.encode() if record is not None else None
    return topic, key, value, headers, None
