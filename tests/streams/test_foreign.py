"""Projections, reactors and transforms reading a topic eventsource did not
write: plain JSON from a plain producer, keyed or not, some in the Connect
envelope, some malformed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, select

from eventsource import (
    Aggregate,
    ConfigurationError,
    Event,
    EventStore,
    ForeignTopic,
    Projection,
    Reaction,
    Reactor,
    View,
    handles,
    on,
    stream,
)
from eventsource.bus.config import KafkaConfig
from eventsource.bus.kafka import KafkaLogConsumer
from eventsource.bus.sqllog import SqlLogConsumer
from eventsource.projections import deadletters
from eventsource.projections.worker import Worker
from eventsource.store.engine import create_engine
from eventsource.streams.kafka import TransformRunner
from tests.bus.model import read_all, read_committed
from tests.conftest import unique
from tests.streams.conftest import Source

pytestmark = pytest.mark.kafka

metadata = MetaData()
T0 = datetime(2026, 5, 1, 9, tzinfo=UTC)
IDS = [f"c-{i}" for i in range(12)]
UNKEYED = [f"u-{i}" for i in range(4)]


class StContact(Event):
    event_type = "st.contact"

    name: str
    email: str


class StContactEmail(Event):
    event_type = "st.contact_email"

    email: str


class StWelcomed(Event):
    event_type = "st.welcomed"

    email: str


class StWelcome(Aggregate, type_name="welcome"):
    email: str = ""

    @classmethod
    def send(cls, contact_id: str, email: str) -> StWelcome:
        welcome = cls(contact_id)
        welcome.trigger(StWelcomed(email=email))
        return welcome

    @on(StWelcomed)
    def _sent(self, event: StWelcomed) -> None:
        self.email = event.email


book_table = Table(
    "st_contact_book",
    metadata,
    Column("contact_id", String(100), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("email", String(100), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("changes", Integer, nullable=False),
)


def contact(i: int, j: int, contact_id: str) -> dict[str, object]:
    at = T0 + timedelta(minutes=10 * j + i)
    return {
        "id": contact_id,
        "name": f"Name {contact_id} v{j}",
        "email": f"{contact_id}.{j}@example.com",
        "updated_at": at.isoformat(),
        "source": "crm",
    }


def produce_contacts(servers: str, topic: str) -> dict[str, dict[str, object]]:
    """Write contacts the way another system would; return each valid contact's last state."""
    admin = AdminClient({"bootstrap.servers": servers})
    for future in admin.create_topics([NewTopic(topic, 3, 1)]).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": servers})
    last: dict[str, dict[str, object]] = {}
    for j in range(3):
        for i, contact_id in enumerate(IDS):
            value = contact(i, j, contact_id)
            # Every third in the Connect JSON envelope, as JsonConverter writes it.
            body = {"schema": None, "payload": value} if i % 3 == 0 else value
            producer.produce(topic, orjson.dumps(body), contact_id.encode())
            last[contact_id] = value
    for i, contact_id in enumerate(UNKEYED):  # no message key: the value's id names them
        last[contact_id] = contact(i, 0, contact_id)
        producer.produce(topic, orjson.dumps(last[contact_id]))
    producer.produce(topic, b"\x00 not json", b"c-garbage")
    invalid = {"id": "c-bad", "email": 5, "updated_at": T0.isoformat()}  # no name
    producer.produce(topic, orjson.dumps(invalid), b"c-bad")
    producer.produce(topic, None, b"c-0")  # a tombstone: skipped
    producer.flush(30)
    return last


@pytest.fixture
def foreign(source_factory: Callable[..., Source], kafka_config: KafkaConfig):
    source = source_factory(kafka_config)
    topic = f"{source.context}.crm-legacy.contacts"
    last = produce_contacts(kafka_config.bootstrap_servers, topic)
    return source, ForeignTopic(topic, StContact, key="id", time="updated_at"), last


def test_a_projection_folds_a_foreign_topic_and_parks_what_it_cannot_read(
    foreign, kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    _, contacts, last = foreign

    class ContactBook(Projection):
        name = unique("st.book")
        topics = [contacts]
        on_failure = "park"
        book = book_table

        @handles(StContact)
        def _changed(self, event: StContact, view: View) -> None:
            row = view.get(self.book, event.aggregate_id)
            view.upsert(
                self.book,
                contact_id=event.aggregate_id,
                name=event.name,
                email=event.email,
                updated_at=event.occurred_at,
                changes=(row["changes"] if row else 0) + 1,
            )

    views = create_engine(f"sqlite:///{tmp_path / 'views.db'}")
    worker = Worker(
        ContactBook(), KafkaLogConsumer(kafka_config, group_id=unique("g")), engine=views
    )
    try:
        worker.run(until_caught_up=True)
    finally:
        worker.close()
    with views.connect() as conn:
        rows = {r.contact_id: r._asdict() for r in conn.execute(select(book_table))}
        letters = deadletters.waiting(conn, ContactBook.name)
    views.dispose()
    assert set(rows) == set(last)
    for contact_id, value in last.items():
        row = rows[contact_id]
        assert (row["name"], row["email"]) == (value["name"], value["email"])
        at = row["updated_at"].replace(tzinfo=row["updated_at"].tzinfo or UTC)
        assert at == datetime.fromisoformat(str(value["updated_at"]))
        assert row["changes"] == (3 if contact_id in IDS else 1)
    assert sorted((letter.stream_id or "") for letter in letters) == [
        "",
        f"{contacts}:c-bad",
    ]
    by_stream = {letter.stream_id: letter for letter in letters}
    assert "not JSON" in by_stream[None].error
    assert "name" in by_stream[f"{contacts}:c-bad"].error


def test_a_reactor_reacts_to_a_foreign_topic(
    foreign, kafka_config: KafkaConfig, tmp_path: Path
) -> None:
    _, contacts, last = foreign

    class Welcomes(Reactor):
        name = unique("st.welcomes")
        topics = [contacts]
        on_failure = "park"

        @handles(StContact)
        def _new(self, event: StContact, reaction: Reaction) -> None:
            welcomes = reaction.repository(StWelcome)
            if welcomes.find(event.aggregate_id) is None:
                welcomes.save(StWelcome.send(event.aggregate_id, event.email))

    own = EventStore(f"sqlite:///{tmp_path / 'own.db'}", context=unique("stown"))
    own.create_schema()
    worker = Worker(Welcomes(), KafkaLogConsumer(kafka_config, group_id=unique("g")), store=own)
    try:
        worker.run(until_caught_up=True)
    finally:
        worker.close()
    welcomed = read_all(own)
    assert sorted(r.aggregate_id for r in welcomed) == sorted(last)
    # Caused by the foreign record: its derived event id.
    assert all(orjson.loads(r.metadata).get("causation_id") for r in welcomed)
    own.close()


def test_a_transform_turns_a_foreign_topic_into_events(foreign, kafka_config: KafkaConfig) -> None:
    source, contacts, last = foreign
    output = f"{source.context}.contact_email"
    dead = f"{source.context}.contacts-dead"
    transform = (
        stream(contacts)
        .map(lambda c: StContactEmail(email=c.email))
        .to(output, name=unique("st.emails"), on_failure="park", dead_letter_topic=dead)
    )
    with TransformRunner(transform, kafka_config) as runner:
        runner.run(until_caught_up=True)
    servers = kafka_config.bootstrap_servers
    emails = read_committed(servers, [output])
    assert len(emails) == 3 * len(IDS) + len(UNKEYED)
    latest: dict[str, str] = {}
    for d in emails:
        latest[d.key.decode()] = orjson.loads(d.value)["email"]  # type: ignore[union-attr]
    assert latest == {k: v["email"] for k, v in last.items()}
    parked = read_committed(servers, [dead])
    assert sorted(p.headers.get("es-event-id", b"-").decode() != "-" for p in parked) == [
        False,
        True,
    ]


def test_the_embedded_log_refuses_a_foreign_topic(tmp_path: Path) -> None:
    class Remote(Projection):
        name = unique("st.remote")
        topics = [ForeignTopic("crm.contacts", StContact)]
        book = book_table

        @handles(StContact)
        def _changed(self, event: StContact, view: View) -> None:
            pass

    store = EventStore(f"sqlite:///{tmp_path / 'x.db'}", context="crm")
    store.create_schema()
    worker = Worker(Remote(), SqlLogConsumer({"crm": store}), engine=store.engine)
    with pytest.raises(ConfigurationError, match="read from Kafka only"):
        worker.run(until_caught_up=True)
    store.close()
