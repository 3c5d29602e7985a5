"""The log: Kafka and the embedded SQL log behind one consumer interface, topic
administration, and the relay that moves a store's events to Kafka."""

from eventsource.bus.base import LogConsumer as LogConsumer
from eventsource.bus.base import LogMessage as LogMessage
from eventsource.bus.base import PartitionLag as PartitionLag
from eventsource.bus.base import StartAt as StartAt
from eventsource.bus.base import TopicPartition as TopicPartition
from eventsource.bus.config import KafkaConfig as KafkaConfig

__all__ = ["KafkaConfig", "LogConsumer", "LogMessage", "PartitionLag", "StartAt", "TopicPartition"]
