"""The connector configurations of the Connect tests, which docs/connect.md
shows (tests/docs check that it shows them as they are here). `{topic}` and
`{file}` are filled in by each test."""

JSON_SINK = {
    "connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
    "tasks.max": "1",
    "topics": "{topic}",
    "file": "{file}",
    "key.converter": "org.apache.kafka.connect.storage.StringConverter",
    "value.converter": "org.apache.kafka.connect.json.JsonConverter",
    "value.converter.schemas.enable": "false",
    # The es-* headers as the text they are (the default parses them into numbers and such).
    "header.converter": "org.apache.kafka.connect.storage.StringConverter",
    # The relay writes in transactions: never hand on a message of an aborted one.
    "consumer.override.isolation.level": "read_committed",
    # Where each value came from, so that a line can be traced to its message.
    "transforms": "source",
    "transforms.source.type": "org.apache.kafka.connect.transforms.InsertField$Value",
    "transforms.source.partition.field": "kafka_partition",
    "transforms.source.offset.field": "kafka_offset",
}
RAW_SINK = {
    "connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
    "tasks.max": "1",
    "topics": "{topic}",
    "file": "{file}",
    "key.converter": "org.apache.kafka.connect.storage.StringConverter",
    "value.converter": "org.apache.kafka.connect.storage.StringConverter",
    "header.converter": "org.apache.kafka.connect.storage.StringConverter",
    "consumer.override.isolation.level": "read_committed",
}

# StringConverter: each line goes to Kafka as it is, JSON text; the records
# have no key, so the projection names each aggregate by a field of the value.
FILE_SOURCE = {
    "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
    "tasks.max": "1",
    "file": "{file}",
    "topic": "{topic}",
    "key.converter": "org.apache.kafka.connect.storage.StringConverter",
    "value.converter": "org.apache.kafka.connect.storage.StringConverter",
}


def filled(config: dict[str, str], **values: str) -> dict[str, str]:
    """`config` with its `{topic}` and `{file}` filled in."""
    return {name: value.format(**values) for name, value in config.items()}
