"""`LogConsumer` on Apache Kafka (confluent-kafka).

Positions are owned by the caller: the consumer group only spreads partitions
over a projection's workers; its committed offsets are never written or read.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaTopicPartition

from eventsource.bus import wire
from eventsource.bus.base import (
    LogMessage,
    OnAssign,
    OnRevoke,
    PartitionLag,
    PositionFilter,
    StartAt,
    TopicPartition,
)
from eventsource.bus.config import ClientErrors, KafkaConfig, kafka_error, librdkafka_log
from eventsource.bus.foreign import ForeignTopic, foreign_topics
from eventsource.bus.polled import Ends, Polled, extend
from eventsource.errors import BrokerUnavailable, BusError, DecodeError
from eventsource.retry import Outage

log = logging.getLogger(__name__)

BEGINNING = OFFSET_BEGINNING
END = OFFSET_END
# Messages taken from librdkafka at a time. A `consume` of a whole batch
# made thousands of `Message` objects in one call: the collector ran inside
# it and promoted most of them to its oldest generation before any was
# converted. Fewer than its young generation's threshold (700) are converted
# and dropped before it next runs.
CHUNK = 500
_WATERMARK_TIMEOUT = 10.0
_TAIL_TIMEOUT = 30.0
# How long a partition's end may trail its high watermark before `caught_up`
# takes it as an open transaction rather than commit markers still being written.
_SETTLE_SECONDS = 3.0


class KafkaLogConsumer:
    """Reads event topics from Kafka with `read_committed` and caller-owned positions."""

    def __init__(self, config: KafkaConfig, *, group_id: str | None = None, **options: Any) -> None:
        self.group_id = group_id or f"eventsource-reader-{uuid.uuid4().hex[:12]}"
        self.config = config
        self._errors = ClientErrors(f"Kafka consumer {self.group_id}")
        self._consumer = Consumer(
            config.consumer(self.group_id, **{"error_cb": self._errors, **options})
        )
        self._filter = PositionFilter()
        self._next: dict[TopicPartition, int] = {}
        self._at_end: dict[TopicPartition, int] = {}
        self._unsettled_since: float | None = None
        self._subscribed: list[str] = []  # logical names
        self._missing: set[str] = set()  # subscribed topics the broker does not have
        self._assigned: set[TopicPartition] = set()
        self._partitions: dict[tuple[str, int], TopicPartition] = {}
        # Topics eventsource did not write, by name: read with their own format.
        self._foreign: dict[str, ForeignTopic] = {}
        # Asks for partition ends on a connection of its own (made on first use).
        self._probe: Consumer | None = None
        self._closed = False

    @property
    def outage(self) -> Outage:
        """Whether the broker is reachable, as this consumer last saw it."""
        return self._errors.outage

    # -- assignment ------------------------------------------------------------

    def subscribe(self, topics: Iterable[str], on_assign: OnAssign, on_revoke: OnRevoke) -> None:
        """Join the group; every (re)assignment asks `on_assign` where to resume."""

        logical, physical = self.config.logical, self.config.physical
        topics = list(topics)
        self._subscribed = [str(t) for t in topics]
        self._foreign.update(foreign_topics(topics))

        def assigned(consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
            ours = [TopicPartition(logical(p.topic), p.partition) for p in partitions]
            starts = on_assign(ours)
            consumer.assign(
                [
                    KafkaTopicPartition(
                        physical(tp.topic),
                        tp.partition,
                        self._start(tp, starts.get(tp, StartAt(0))),
                    )
                    for tp in ours
                ]
            )
            log.info("assigned %s", ", ".join(map(str, ours)) or "nothing")

        def revoked(consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
            ours = [TopicPartition(logical(p.topic), p.partition) for p in partitions]
            try:
                on_revoke(ours)
            finally:
                for tp in ours:
                    self._forget(tp)
                consumer.unassign()
            log.info("revoked %s", ", ".join(map(str, ours)) or "nothing")

        self._consumer.subscribe(
            [physical(t) for t in topics], on_assign=assigned, on_revoke=revoked, on_lost=revoked
        )

    def assign(self, positions: Mapping[TopicPartition, StartAt]) -> None:
        """Read exactly these partitions from these offsets, outside any group."""
        self._foreign.update(foreign_topics(tp.topic for tp in positions))
        partitions = [
            KafkaTopicPartition(
                self.config.physical(tp.topic), tp.partition, self._start(tp, start)
            )
            for tp, start in positions.items()
        ]
        self._consumer.assign(partitions)

    def seek(self, partition: TopicPartition, start: StartAt) -> None:
        """Move an assigned partition back or forward (after a rejected commit)."""
        offset = self._start(partition, start)
        self._consumer.seek(
            KafkaTopicPartition(self.config.physical(partition.topic), partition.partition, offset)
        )

    def assignment(self) -> list[TopicPartition]:
        """The partitions this consumer currently reads."""
        return sorted(self._assigned)

    def partitions(self, topic: str) -> int:
        """How many partitions `topic` has (0 if it does not exist yet)."""
        name = self.config.physical(topic)
        try:
            metadata = self._consumer.list_topics(name, timeout=_WATERMARK_TIMEOUT)
        except KafkaException as exc:
            error = kafka_error(exc)
            if error.code() in (KafkaError._TRANSPORT, KafkaError._TIMED_OUT):
                raise BrokerUnavailable(
                    f"cannot reach Kafka at {self.config.bootstrap_servers}: {error.str()}"
                ) from exc
            raise BusError(f"cannot read the metadata of topic {name!r}: {exc}") from exc
        found = metadata.topics.get(name)
        if found is None or found.error is not None:
            return 0
        return len(found.partitions)

    def _start(self, tp: TopicPartition, start: StartAt) -> int:
        # One object per partition: dict lookups in `poll` then match by identity.
        tp = self._partitions.setdefault((self.config.physical(tp.topic), tp.partition), tp)
        self._assigned.add(tp)
        self._missing.discard(tp.topic)
        self._filter.reset(tp, start.last_position)
        self._at_end.pop(tp, None)
        if start.offset >= 0:
            self._next[tp] = start.offset
        return start.offset

    def _forget(self, tp: TopicPartition) -> None:
        self._assigned.discard(tp)
        self._filter.forget(tp)
        self._next.pop(tp, None)
        self._at_end.pop(tp, None)

    # -- reading ---------------------------------------------------------------

    def poll(self, max_messages: int, timeout: float) -> Polled:
        """Up to `max_messages`, waiting at most `timeout` seconds for the first."""
        out: list[Any] = []
        ends: Ends = {}
        read = 0
        mixed = False  # whether `out` holds messages as well as fields
        try:
            chunk = self._first(min(max_messages, CHUNK), timeout)
            while chunk:
                read += len(chunk)
                full = len(chunk) == CHUNK
                mixed = self._records(chunk, out, ends) or mixed
                if not full or read >= max_messages:
                    break
                chunk = self._consumer.consume(min(max_messages - read, CHUNK), 0)
        except KafkaException as exc:
            raise BusError(f"Kafka consumer failed: {exc}") from exc
        if not read:
            self._errors.raise_if_refused("consumer")
        else:
            self._errors.recovered()
        return Polled(out, _message if mixed else wire.message, ends)

    def _first(self, max_messages: int, timeout: float) -> list[Any]:
        # `consume(n, timeout)` waits out the whole timeout unless n messages
        # arrive; take what is already fetched, else wait for the first only.
        messages = self._consumer.consume(max_messages, 0)
        if messages or timeout <= 0:
            return messages
        first = self._consumer.poll(timeout)
        if first is None:
            return []
        return (
            [first, *self._consumer.consume(max_messages - 1, 0)] if max_messages > 1 else [first]
        )

    def _records(self, messages: list[Any], out: list[Any], ends: Ends) -> bool:
        """Convert `messages` into `out`, moving the batch's `ends` on.

        Each entry is an event's `wire.MessageFields` (plain values, see
        `polled`) or a `LogMessage` made here (a foreign record, a message
        that is not an event); returns whether there was one of those.
        """
        made = False
        # This runs for every message read: everything is looked up once.
        partitions, foreign, follow = self._partitions, self._foreign, self._next
        at_end, last = self._at_end, self._filter.last
        last_get, decode = last.get, wire.decode_fields
        # Each message is dropped once converted (popped off the reversed
        # list): a confluent-kafka `Message` is tracked by the garbage
        # collector, and Messages still alive at a collection of its middle
        # generation are promoted to the oldest one, whose collections walk
        # every object the process holds.
        messages.reverse()
        pop = messages.pop
        while messages:
            m = pop()
            error = m.error()
            if error is not None:
                self._on_error(m, error)
                continue
            kafka_topic, partition, offset = m.topic() or "", m.partition() or 0, m.offset() or 0
            tp = partitions.get((kafka_topic, partition))
            if tp is None:
                tp = TopicPartition(self.config.logical(kafka_topic), partition)
                partitions[kafka_topic, partition] = tp
            topic = tp.topic
            follow[tp] = offset + 1
            if at_end:
                at_end.pop(tp, None)
            if foreign and topic in foreign:
                message = self._foreign_message(foreign[topic], tp, offset, m)
                if message is not None:
                    out.append(message)
                    made = True
                    extend(ends, tp, offset, message.record.position if message.record else 0)
                continue
            try:
                fields = decode(topic, partition, offset, m.key(), m.value(), m.headers())
            except DecodeError as exc:
                out.append(LogMessage(topic, partition, offset, None, exc))
                made = True
                extend(ends, tp, offset, 0)
                continue
            # The position filter's common case inline: a position above the
            # last, which is then the highest of the batch as well.
            position = fields[3]
            if position > last_get(tp, 0):
                last[tp] = position
                ends[tp] = (offset + 1, position)
            elif self._filter.accept_position(tp, position, offset):
                extend(ends, tp, offset, position)
            else:
                continue
            out.append(fields)
        return made

    @staticmethod
    def _foreign_message(
        foreign: ForeignTopic, tp: TopicPartition, offset: int, message: Any
    ) -> LogMessage | None:
        """A foreign record as a message (None for a tombstone, which is skipped)."""
        kind, timestamp = message.timestamp()
        try:
            record = foreign.record(
                tp.topic,
                tp.partition,
                offset,
                message.key(),
                message.value(),
                timestamp if kind else None,
            )
        except DecodeError as exc:
            return LogMessage(tp.topic, tp.partition, offset, None, exc)
        if record is None:
            return None
        return LogMessage(tp.topic, tp.partition, offset, record)

    def _on_error(self, message: Any, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            tp = TopicPartition(self.config.logical(message.topic()), message.partition())
            self._at_end[tp] = message.offset()
            self._next[tp] = max(self._next.get(tp, 0), message.offset())
            return
        if error.fatal():
            raise BusError(f"fatal Kafka consumer error: {error}")
        if error.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC):
            self._topic_missing(message.topic())
            return
        # Broker outages: librdkafka retries by itself; say so once and keep polling.
        self._errors.outage.begin(BrokerUnavailable(error.str()))
        time.sleep(0.2)

    def _topic_missing(self, physical: str | None) -> None:
        # Not an outage: the broker answered. The relay creates a store's topics
        # when it first publishes; until then there is nothing to read there.
        if not physical:
            return
        topic = self.config.logical(physical)
        if topic not in self._missing:
            log.warning(
                "topic %s does not exist: nothing written to it yet, or a misspelled name;"
                " reading it once it does",
                physical,
            )
        self._missing.add(topic)

    def lag(self) -> dict[TopicPartition, PartitionLag]:
        """Position and end of every assigned partition. The end is the high
        watermark: it counts transaction markers, and events in transactions
        not committed yet."""
        out: dict[TopicPartition, PartitionLag] = {}
        for tp in self.assignment():
            high = self._high_watermark(tp)
            # At the end of a partition the position is the end offset Kafka
            # reported, past any trailing transaction marker; `high` moves on
            # as soon as more is written, whether or not we have polled since.
            position = self._at_end.get(tp, self._next.get(tp, 0))
            end = max(high, position)
            out[tp] = PartitionLag(position, end, end - position)
        if out:  # with nothing assigned, no broker was asked: no news of an outage
            self._errors.recovered()
        return out

    def ends(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, StartAt]:
        """Where a consumer that skips what each partition holds so far starts:
        the partition's end offset and the global position of its last event."""
        wanted = list(partitions)
        if not wanted:
            return {}
        # A consumer of its own: reading the tails must not move this one's partitions.
        reader = Consumer(self.config.consumer(f"{self.group_id}.ends"))
        try:
            out: dict[TopicPartition, StartAt] = {}
            for tp in wanted:
                topic = self.config.physical(tp.topic)
                try:
                    _low, high = reader.get_watermark_offsets(
                        KafkaTopicPartition(topic, tp.partition),
                        timeout=_WATERMARK_TIMEOUT,
                        cached=False,
                    )
                except KafkaException as exc:
                    raise BusError(f"cannot read the end of {tp}: {exc}") from exc
                out[tp] = StartAt(high, last_position(reader, topic, tp.partition))
            return out
        finally:
            reader.close()

    def caught_up(self) -> bool:
        """Whether every assigned partition has been read to its end."""
        # A subscribed topic that does not exist has nothing to read; one
        # that exists counts once its partitions are assigned.
        covered = {tp.topic for tp in self._assigned} | self._missing
        if (
            not covered
            or not covered.issuperset(self._subscribed)
            or not all(tp in self._at_end for tp in self._assigned)
        ):
            self._unsettled_since = None
            return False
        # With read_committed a partition ends at its last stable offset. A
        # producer's commit returns before the broker has written the commit
        # markers, so for a moment the end can sit before events that are
        # already committed: wait for the high watermark, but only briefly,
        # since a transaction still open (or abandoned) may hold it for minutes.
        if all(high <= self._at_end[tp] for tp, high in self._highs().items()):
            self._unsettled_since = None
            return True
        now = time.monotonic()
        if self._unsettled_since is None:
            self._unsettled_since = now
        return now - self._unsettled_since >= _SETTLE_SECONDS

    def _highs(self) -> dict[TopicPartition, int]:
        return {tp: self._high_watermark(tp) for tp in self._assigned}

    def _high_watermark(self, tp: TopicPartition) -> int:
        """The partition's high watermark, asked of the broker now."""
        # Not on the reading consumer's connection: a broker answers one
        # connection's requests in order, so there the question would wait
        # behind the fetch in flight (up to `fetch.wait.max.ms` at the end of
        # the log), stalling a heartbeat 100 ms for every partition. And
        # read_uncommitted: a read_committed client is told the last stable
        # offset, which trails a commit until the broker writes its markers.
        probe = self._probe
        if probe is None:
            options = self.config.consumer(f"{self.group_id}.probe", error_cb=_probe_error)
            probe = self._probe = Consumer({**options, "isolation.level": "read_uncommitted"})
        try:
            _low, high = probe.get_watermark_offsets(
                KafkaTopicPartition(self.config.physical(tp.topic), tp.partition),
                timeout=_WATERMARK_TIMEOUT,
                cached=False,
            )
        except KafkaException as exc:
            raise BusError(f"cannot read the end of {tp}: {exc}") from exc
        return int(high)

    # -- the group's own offsets (transforms commit theirs in Kafka transactions) --

    def committed(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, StartAt]:
        """Where the group committed each partition: the next offset (`BEGINNING`
        if it never committed there) and the global position stored with it.

        Pending transactional commits are waited for (read_committed), so
        this is what the last committed transaction left.
        """
        wanted = list(partitions)
        if not wanted:
            return {}
        asked = [KafkaTopicPartition(self.config.physical(tp.topic), tp.partition) for tp in wanted]
        try:
            found = self._consumer.committed(asked, timeout=_WATERMARK_TIMEOUT)
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot read the committed offsets: {exc}") from exc
        out: dict[TopicPartition, StartAt] = {}
        for tp, kafka_tp in zip(wanted, found, strict=True):
            offset = kafka_tp.offset if kafka_tp.offset >= 0 else BEGINNING
            try:
                last = int(kafka_tp.metadata or 0)
            except ValueError:
                last = 0
            out[tp] = StartAt(offset, last)
        return out

    def group_metadata(self) -> Any:
        """The consumer's group metadata, for `send_offsets_to_transaction`:
        a producer that sends offsets with it is fenced once the group has
        moved on to a newer generation (KIP-447)."""
        return self._consumer.consumer_group_metadata()

    def close(self) -> None:
        """Leave the group and close the connection (idempotent)."""
        if not self._closed:
            self._closed = True
            if self._probe is not None:
                self._probe.close()
            self._consumer.close()

    def __enter__(self) -> KafkaLogConsumer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _probe_error(error: KafkaError) -> None:
    # The reading consumer reports an outage itself. The probe's own copies
    # are served only when it is closed, so as warnings they would say the
    # brokers are down long after they came back.
    librdkafka_log.debug("probe for partition ends: %s", error)


def last_position(consumer: Consumer, topic: str, partition: int) -> int:
    """The global position of the last committed event in one partition (0 if none)."""
    return last_committed(consumer, topic, partition)[0]


def last_committed(consumer: Consumer, topic: str, partition: int) -> tuple[int, str | None]:
    """The global position of the last committed event in one partition (0 if
    none), and the id of the store that wrote it (None if unknown).

    Reads backwards in growing windows, because the tail may be aborted
    messages or control records that `read_committed` hides.
    """
    tp = KafkaTopicPartition(topic, partition)
    try:
        low, high = consumer.get_watermark_offsets(tp, timeout=_TAIL_TIMEOUT, cached=False)
    except KafkaException as exc:
        raise BrokerUnavailable(f"cannot read the end of {topic}[{partition}]: {exc}") from exc
    window = 16
    end = high
    while end > low:
        start = max(low, end - window)
        found = _last_in_range(consumer, topic, partition, start, end)
        if found is not None:
            return found
        end = start
        window *= 4
    return 0, None


def _last_in_range(
    consumer: Consumer, topic: str, partition: int, start: int, end: int
) -> tuple[int, str | None] | None:
    consumer.assign([KafkaTopicPartition(topic, partition, start)])
    last: tuple[int, str | None] | None = None
    deadline = time.monotonic() + _TAIL_TIMEOUT
    while time.monotonic() < deadline:
        message = consumer.poll(1.0)
        if message is None:
            continue
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                break
            if error.fatal():
                raise BusError(f"reading {topic}[{partition}] failed: {error}")
            continue
        offset = message.offset()
        if offset is None or offset >= end:
            break
        headers = message.headers()
        position = wire.position_of(headers)
        if position is not None:
            last = (position, wire.store_of(headers))
    else:
        raise BrokerUnavailable(f"timed out reading the tail of {topic}[{partition}]")
    consumer.unassign()
    return last


def _message(entry: Any) -> LogMessage:
    """The message of one of `_records`' entries, in a batch that holds both kinds."""
    return entry if type(entry) is LogMessage else wire.message(entry)
