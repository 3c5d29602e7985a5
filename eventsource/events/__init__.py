"""Domain events, their type registry, upcasters and the codec to stored records."""

from eventsource.events.base import METADATA_FIELDS as METADATA_FIELDS
from eventsource.events.base import Event as Event
from eventsource.events.codec import EventCodec as EventCodec
from eventsource.events.notices import PersonalDataForgotten as PersonalDataForgotten
from eventsource.events.personal import FORGOTTEN as FORGOTTEN
from eventsource.events.personal import PersonalData as PersonalData
from eventsource.events.records import StoredEvent as StoredEvent
from eventsource.events.records import stream_id_for as stream_id_for
from eventsource.events.registry import EventRegistry as EventRegistry
from eventsource.events.registry import default_registry as default_registry
from eventsource.events.registry import upcaster as upcaster

__all__ = [
    "FORGOTTEN",
    "METADATA_FIELDS",
    "Event",
    "EventCodec",
    "EventRegistry",
    "PersonalData",
    "PersonalDataForgotten",
    "StoredEvent",
    "default_registry",
    "stream_id_for",
    "upcaster",
]
