"""A transform on the embedded log: a reactor that appends its output to the store.

With no Kafka the log is the stores' own events, so the output topic
`<context>.<name>` is the events of aggregate type `<name>` in the store of
`<context>`, which must be the context the transform runs in. The reactor
appends each batch's outputs and its positions in one SQL transaction:
exactly once, like any reactor, and projections read the output topic like
any other. Dead letters, status and replays are the reactor's.
"""

from __future__ import annotations

from typing import Any, ClassVar

from eventsource.bus.foreign import ForeignTopic
from eventsource.bus.sqllog import split_topic
from eventsource.errors import ConfigurationError
from eventsource.events.base import Event
from eventsource.projections.base import Reactor, handles
from eventsource.projections.reaction import Reaction
from eventsource.streams.output import stamped
from eventsource.streams.topology import Transform


class TransformReactor(Reactor):
    """The reactors that run transforms on the embedded log (one per transform: `reactor_for`)."""

    transform: ClassVar[Transform]
    # An event's own metadata names its aggregate type but not its context:
    # the input topic it came from, by aggregate type.
    topic_of: ClassVar[dict[str, str]] = {}

    def apply(self, event: Event, reaction: Reaction) -> None:
        cls = type(self)
        topic = cls.topic_of[event.aggregate_type]
        records = cls.transform.apply(topic, event)
        if records:
            reaction.append(*stamped(cls.transform, records, event))


def reactor_for(transform: Transform, context: str) -> type[TransformReactor]:
    """The reactor class that runs `transform` in `context`, on the embedded log.

    A class per transform, because a consumer's name, topics and handlers
    are class attributes (the worker, status and dead letters read them there).
    """
    if transform.context != context:
        raise ConfigurationError(
            f"transform {transform.name!r} writes {transform.output!r}, a topic of context"
            f" {transform.context!r}; on the embedded log a transform appends its output to its"
            f" own context's store: run it in context {transform.context!r}, not {context!r}"
        )
    topic_of: dict[str, str] = {}
    for topic in transform.topics:
        if isinstance(topic, ForeignTopic):
            raise ConfigurationError(
                f"transform {transform.name!r} reads foreign topic {str(topic)!r}, which only"
                " Kafka carries; set EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS"
            )
        aggregate_type = split_topic(topic)[1]
        if aggregate_type in topic_of:
            raise ConfigurationError(
                f"transform {transform.name!r} reads {topic_of[aggregate_type]!r} and {topic!r}:"
                " on the embedded log their events cannot be told apart (same aggregate type)"
            )
        topic_of[aggregate_type] = topic

    def apply(self: TransformReactor, event: Event, reaction: Reaction) -> None:
        TransformReactor.apply(self, event, reaction)

    namespace: dict[str, Any] = {
        "name": transform.name,
        "topics": list(transform.topics),
        "on_failure": transform.on_failure,
        # The steps are pure functions of the event: a retry would fail the same way.
        "max_retries": 0,
        "transform": transform,
        "topic_of": topic_of,
        "_apply": handles(*transform.types())(apply),
        "__module__": __name__,
    }
    return type(f"TransformReactor[{transform.name}]", (TransformReactor,), namespace)
