"""The services the integration tests use are the real ones, and they work."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.conftest import PostgresDatabases, unique


@pytest.mark.kafka
def test_kafka_transactional_round_trip(kafka_servers: str) -> None:
    topic = unique("services_roundtrip")
    admin = AdminClient({"bootstrap.servers": kafka_servers})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)

    producer = Producer(
        {"bootstrap.servers": kafka_servers, "transactional.id": unique("services_tx")}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(10):
        producer.produce(topic, key=b"aborted", value=f"aborted-{i}".encode())
    producer.abort_transaction(30)
    producer.begin_transaction()
    for i in range(25):
        producer.produce(topic, key=b"k", value=f"committed-{i}".encode())
    producer.commit_transaction(30)

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_servers,
            "group.id": unique("services_group"),
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    values: list[bytes] = []
    try:
        while True:
            message = consumer.poll(10)
            assert message is not None, "timed out before the end of the partition"
            if message.error():
                if message.error().code() == -191:  # _PARTITION_EOF
                    break
                raise KafkaException(message.error())
            values.append(message.value())
    finally:
        consumer.close()
        admin.delete_topics([topic])[topic].result(30)
    assert values == [f"committed-{i}".encode() for i in range(25)]

    version = admin.describe_cluster().result(30)
    assert version.controller is not None


@pytest.mark.postgres
def test_postgres_round_trip(postgres_databases: PostgresDatabases) -> None:
    engine = sa.create_engine(postgres_databases.create())
    try:
        with engine.begin() as conn:
            server = conn.execute(sa.text("show server_version")).scalar_one()
            conn.execute(sa.text("create table t (id int primary key, name text)"))
            conn.execute(sa.text("insert into t values (1, 'one'), (2, 'two')"))
        with engine.connect() as conn:
            rows = conn.execute(sa.text("select id, name from t order by id")).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [(1, "one"), (2, "two")]
    assert int(server.split(".")[0]) >= 13
