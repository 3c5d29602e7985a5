"""Transforms: read topics, map, filter, re-key, write a topic, exactly once.

::

    butterflies = stream("zoo.caterpillar", Caterpillar).map(metamorphose).to("zoo.butterfly")

`eventsource transform run module:butterflies` runs it: on Kafka in one
transaction per batch (`streams.kafka`), on the embedded log as a reactor
whose output goes to its context's store (`streams.embedded`).
"""

from eventsource.streams.topology import Stream as Stream
from eventsource.streams.topology import Transform as Transform
from eventsource.streams.topology import merge as merge
from eventsource.streams.topology import stream as stream

__all__ = ["Stream", "Transform", "merge", "stream"]
