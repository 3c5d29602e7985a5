"""`eventsource events tail`: a readable stream of the events on the log."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from sqlalchemy import select

from eventsource.bus.base import LogConsumer, LogMessage, StartAt, TopicPartition
from eventsource.errors import ConfigurationError, DecodeError
from eventsource.events.codec import EventCodec
from eventsource.settings import Settings
from eventsource.store import schema
from eventsource.store.engine import read_transaction
from eventsource.store.eventstore import EventStore


def follow(
    settings: Settings,
    *,
    topics: list[str],
    from_beginning: bool = False,
    validate: bool = False,
    stop: threading.Event | None = None,
    max_events: int | None = None,
    idle_exit: float | None = None,
) -> Iterator[str]:
    """Lines describing each event on `topics` (all event topics when empty)."""
    stop = stop or threading.Event()
    codec = EventCodec()
    consumer, stores = _open(settings, topics, from_beginning)
    seen = 0
    idle_since = time.monotonic()
    try:
        while not stop.is_set():
            messages = consumer.poll(500, 0.5)
            if not messages:
                if idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                    return
                continue
            idle_since = time.monotonic()
            for message in messages:
                yield describe(message, codec if validate else None)
                seen += 1
                if max_events is not None and seen >= max_events:
                    return
    finally:
        consumer.close()
        for store in stores:
            store.close()


def describe(message: LogMessage, codec: EventCodec | None = None) -> str:
    """One line for one message."""
    where = f"{message.topic}[{message.partition}]@{message.offset}"
    record = message.record
    if record is None:
        return f"!! {where}  not an event: {message.error}"
    problem = ""
    if codec is not None:
        try:
            codec.decode(record)
        except DecodeError as exc:
            problem = f"  !! {exc.reason}"
    when = record.occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return (
        f"{when}  {where}  #{record.position}  {record.event_type}"
        f"  {record.aggregate_id} v{record.version}  {record.payload}{problem}"
    )


def _open(
    settings: Settings, topics: list[str], from_beginning: bool
) -> tuple[LogConsumer, list[EventStore]]:
    if not settings.embedded:
        from eventsource.bus.admin import TopicAdmin
        from eventsource.bus.config import KafkaConfig
        from eventsource.bus.kafka import BEGINNING, END, KafkaLogConsumer

        config = KafkaConfig.from_settings(settings)
        known = {
            config.logical(t): n
            for t, n in TopicAdmin(config).list_topics(config.topic_prefix).items()
        }
        chosen = topics or sorted(t for t in known if "." in t)
        missing = [t for t in chosen if t not in known]
        if missing:
            raise ConfigurationError(f"no such topic(s) on Kafka: {', '.join(missing)}")
        kafka_consumer = KafkaLogConsumer(config)
        offset = BEGINNING if from_beginning else END
        kafka_consumer.assign(
            {TopicPartition(t, p): StartAt(offset) for t in chosen for p in range(known[t])}
        )
        return kafka_consumer, []

    from eventsource.bus.sqllog import SqlLogConsumer, split_topic

    stores = {ctx: EventStore(url, context=ctx) for ctx, url in settings.store_urls().items()}
    own = stores[settings.context]
    if not topics:
        with read_transaction(own.engine) as conn:
            types = conn.execute(select(schema.events.c.aggregate_type).distinct()).scalars()
            topics = sorted(own.topic_for(t) for t in types)
    sql_consumer = SqlLogConsumer(stores)
    starts: dict[TopicPartition, StartAt] = {}
    for topic in topics:
        source = stores.get(split_topic(topic)[0])
        head = 0 if from_beginning or source is None else source.head_position()
        starts[TopicPartition(topic, 0)] = StartAt(head + 1)
    sql_consumer.assign(starts)
    return sql_consumer, list(stores.values())
