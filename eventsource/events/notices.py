"""Events the framework itself records."""

from __future__ import annotations

from eventsource.events.base import Event
from eventsource.events.personal import Sealing

NOTICE_AGGREGATE_TYPE = "personal_data"


class PersonalDataForgotten(Event):
    """`EventStore.forget` deleted the key of a subject (the `aggregate_id`).

    Recorded in the forgetting context's store, on the stream
    `personal_data:<subject>` (topic `<context>.personal_data`), so that
    projections anywhere can drop what they copied of the subject's personal
    data. A codec that decodes it drops the keys it has cached, so the
    subject's events read after it decode to placeholders at once.
    """

    event_type = "eventsource.PersonalDataForgotten"


PersonalDataForgotten._es_sealing = Sealing(notice=True)
