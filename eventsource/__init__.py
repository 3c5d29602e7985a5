"""eventsource: event sourcing for services that integrate through Kafka.

The public API; everything else is machinery that applications never import.
`eventsource.testing` (scenarios, fixtures and the log backend contract) is
the other public module.

::

    from eventsource import Aggregate, Event, EventStore, Repository, on

    store = EventStore("sqlite:///orders.db", context="orders")
    store.create_schema()
    Repository(store, Order).save(Order.place("o-1", "c-1", Decimal("9.90")))
"""

from eventsource.aggregates import Aggregate as Aggregate
from eventsource.aggregates import Repository as Repository
from eventsource.aggregates import caused_by as caused_by
from eventsource.aggregates import on as on
from eventsource.bus import KafkaConfig as KafkaConfig
from eventsource.bus import LogConsumer as LogConsumer
from eventsource.bus.foreign import ForeignTopic as ForeignTopic
from eventsource.bus.kafka import KafkaLogConsumer as KafkaLogConsumer
from eventsource.bus.relay import Relay as Relay
from eventsource.bus.sqllog import SqlLogConsumer as SqlLogConsumer
from eventsource.errors import AggregateNotFound as AggregateNotFound
from eventsource.errors import BrokerUnavailable as BrokerUnavailable
from eventsource.errors import BusError as BusError
from eventsource.errors import ConcurrencyError as ConcurrencyError
from eventsource.errors import ConfigurationError as ConfigurationError
from eventsource.errors import DecodeError as DecodeError
from eventsource.errors import EncodeError as EncodeError
from eventsource.errors import EventSourceError as EventSourceError
from eventsource.errors import EventTooLarge as EventTooLarge
from eventsource.errors import IncompatibleSchema as IncompatibleSchema
from eventsource.errors import InvalidAggregateId as InvalidAggregateId
from eventsource.errors import KafkaAuthenticationError as KafkaAuthenticationError
from eventsource.errors import MissingHandler as MissingHandler
from eventsource.errors import PoisonEvent as PoisonEvent
from eventsource.errors import ProjectionError as ProjectionError
from eventsource.errors import ProjectionVersionMismatch as ProjectionVersionMismatch
from eventsource.errors import RelayFenced as RelayFenced
from eventsource.errors import StalePosition as StalePosition
from eventsource.errors import StoreError as StoreError
from eventsource.errors import StoreMismatch as StoreMismatch
from eventsource.errors import StoreUnavailable as StoreUnavailable
from eventsource.errors import TopicConfigError as TopicConfigError
from eventsource.errors import TransformFenced as TransformFenced
from eventsource.errors import UnknownEventType as UnknownEventType
from eventsource.events import FORGOTTEN as FORGOTTEN
from eventsource.events import Event as Event
from eventsource.events import PersonalData as PersonalData
from eventsource.events import PersonalDataForgotten as PersonalDataForgotten
from eventsource.events import StoredEvent as StoredEvent
from eventsource.events import upcaster as upcaster
from eventsource.observability.metrics import RelayMetrics as RelayMetrics
from eventsource.observability.metrics import WorkerMetrics as WorkerMetrics
from eventsource.projections import Projection as Projection
from eventsource.projections import Reaction as Reaction
from eventsource.projections import Reactor as Reactor
from eventsource.projections import View as View
from eventsource.projections import Worker as Worker
from eventsource.projections import handles as handles
from eventsource.projections.deadlines import Deadline as Deadline
from eventsource.projections.deadlines import deadline as deadline
from eventsource.projections.rebuild import rebuild as rebuild
from eventsource.projections.runner import Runtime as Runtime
from eventsource.projections.runner import load_class as load_class
from eventsource.projections.runner import run_workers as run_workers
from eventsource.projections.view import ViewRow as ViewRow
from eventsource.projections.wait import WaitTimeout as WaitTimeout
from eventsource.projections.wait import wait_for as wait_for
from eventsource.projections.windows import TumblingWindow as TumblingWindow
from eventsource.settings import Settings as Settings
from eventsource.store import EventStore as EventStore
from eventsource.streams import Stream as Stream
from eventsource.streams import Transform as Transform
from eventsource.streams import merge as merge
from eventsource.streams import stream as stream

__version__ = "0.1.0"

__all__ = [
    "FORGOTTEN",
    "Aggregate",
    "AggregateNotFound",
    "BrokerUnavailable",
    "BusError",
    "ConcurrencyError",
    "ConfigurationError",
    "Deadline",
    "DecodeError",
    "EncodeError",
    "Event",
    "EventSourceError",
    "EventStore",
    "EventTooLarge",
    "ForeignTopic",
    "IncompatibleSchema",
    "InvalidAggregateId",
    "KafkaAuthenticationError",
    "KafkaConfig",
    "KafkaLogConsumer",
    "LogConsumer",
    "MissingHandler",
    "PersonalData",
    "PersonalDataForgotten",
    "PoisonEvent",
    "Projection",
    "ProjectionError",
    "ProjectionVersionMismatch",
    "Reaction",
    "Reactor",
    "Relay",
    "RelayFenced",
    "RelayMetrics",
    "Repository",
    "Runtime",
    "Settings",
    "SqlLogConsumer",
    "StalePosition",
    "StoreError",
    "StoreMismatch",
    "StoreUnavailable",
    "StoredEvent",
    "Stream",
    "TopicConfigError",
    "Transform",
    "TransformFenced",
    "TumblingWindow",
    "UnknownEventType",
    "View",
    "ViewRow",
    "WaitTimeout",
    "Worker",
    "WorkerMetrics",
    "__version__",
    "caused_by",
    "deadline",
    "handles",
    "load_class",
    "merge",
    "on",
    "rebuild",
    "run_workers",
    "stream",
    "upcaster",
    "wait_for",
]
