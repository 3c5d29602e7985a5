"""Personal data on Kafka: a consumer in another context, with its own
database, reads the plaintext before `forget` and placeholders after; the
topics never carry the plaintext."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from eventsource import FORGOTTEN, EventStore
from eventsource.bus.admin import TopicAdmin
from eventsource.bus.config import KafkaConfig
from eventsource.bus.kafka import KafkaLogConsumer
from eventsource.bus.relay import Relay
from eventsource.bus.wire import decode as wire_decode
from eventsource.projections.base import Consumer
from eventsource.projections.rebuild import rebuild
from eventsource.projections.runner import run_workers
from eventsource.projections.worker import Worker
from tests.bus.model import read_committed
from tests.conftest import unique
from tests.privacy.domain import MemberJoined, directory_for, roster_for
from tests.privacy.evidence import every_cell, postgres_files, topic_bytes
from tests.privacy.story import ADA, ADA_MOVED, GRACE, PLAINTEXT, tell

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def test_a_consumer_in_another_context_reads_placeholders_after_forget(
    database_url_factory: Callable[..., str],
    kafka_servers: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, the whole scenario
    context = unique("pd")
    config = KafkaConfig(kafka_servers, partitions=3)
    topics = [f"{context}.member", f"{context}.board", f"{context}.personal_data"]
    members_url = database_url_factory("postgres")
    members = EventStore(members_url, context=context)
    members.create_schema()
    views_url = database_url_factory("postgres")
    views = EventStore(views_url, context="directory")
    views.create_schema()
    # The directory context reads the members' keys from their database.
    reader = EventStore(views_url, context="directory", keys={context: members_url})
    directory, roster = directory_for(context), roster_for(context)
    logs: list[KafkaLogConsumer] = []

    def relay() -> None:
        with Relay(members, config, batch_size=500) as running:
            running.start()
            running.run(until_caught_up=True)

    def catch_up(*classes: type[Consumer]) -> None:
        workers = []
        for cls in classes:
            logs.append(KafkaLogConsumer(config, group_id=unique("pd-group")))
            workers.append(Worker(cls(), logs[-1], engine=views.engine, codec=reader.codec))
        run_workers(workers, stop=threading.Event(), until_caught_up=True, lag_interval=0)

    def rows(table: sa.Table) -> dict[str, tuple[object, ...]]:
        with views.engine.connect() as conn:
            return {r[0]: tuple(r[1:]) for r in conn.execute(sa.select(table))}

    try:
        TopicAdmin(config).ensure(topics)
        tell(members)
        relay()
        catch_up(directory, roster)
        assert rows(directory.members) == {
            "m-ada": (ADA[0], *ADA_MOVED),
            "m-grace": GRACE,
        }
        assert rows(roster.names) == {"m-ada": (ADA[0],), "m-grace": (GRACE[0],)}

        members.forget("m-ada")
        relay()  # the notice goes out like any event
        catch_up(directory, roster)
        assert rows(directory.members) == {"m-grace": GRACE}  # the notice dropped the copy
        assert rows(roster.names)["m-ada"] == (ADA[0],)  # a copy the projection kept

        # Rebuilt from Kafka (the rebuild's codec finds the keys through the
        # settings), the roster has the placeholder; the directory has no plaintext.
        monkeypatch.setenv("EVENTSOURCE_KEYS", f'{{"{context}": "{members_url}"}}')
        for cls in (roster, directory):
            logs.append(KafkaLogConsumer(config, group_id=unique("pd-rebuild")))
            assert rebuild(cls, logs[-1], engine=views.engine) > 0
        assert rows(roster.names) == {"m-ada": (FORGOTTEN,), "m-grace": (GRACE[0],)}
        assert rows(directory.members).get("m-ada", (FORGOTTEN, None, None)) == (
            FORGOTTEN,
            None,
            None,
        )

        # Every message decodes in the other context: Ada's with placeholders.
        delivered = read_committed(kafka_servers, topics)
        joined = {}
        for m in delivered:
            record = wire_decode(
                m.topic, m.partition, m.offset, m.key, m.value, list(m.headers.items())
            )
            event = reader.codec.decode(record)
            if isinstance(event, MemberJoined):
                joined[event.aggregate_id] = (event.name, event.home)
        assert joined["m-ada"] == (FORGOTTEN, None)
        assert joined["m-grace"][0] == GRACE[0]

        # The plaintext is on no topic, in neither database, in no log line.
        count, raw = topic_bytes(kafka_servers, topics)
        assert count == members.head_position()
        cells = every_cell(members_url) + every_cell(views_url)
        files = postgres_files(members_url)
        for text in PLAINTEXT:
            assert text.encode() not in raw
            assert text.encode() not in files
            assert text not in caplog.text
        # The views too: the roster's plaintext copy went with its rebuild.
        assert all(text not in cells for text in PLAINTEXT)
    finally:
        for log in logs:
            log.close()
        for store in (reader, views, members):
            store.close()
        admin = TopicAdmin(config)
        admin.delete(admin.list_topics(f"{context}."))
