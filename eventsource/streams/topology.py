"""The typed API of a transform: read topics, map, filter, re-key, write a topic.

::

    butterflies = stream("zoo.caterpillar", Caterpillar).map(metamorphose).to("zoo.butterfly")

A `Stream` is a description, built by chaining; `to()` ends it in a
`Transform`, which a runner executes: on Kafka in one Kafka transaction per
batch (`eventsource.streams.kafka`), on the embedded log as a reactor that
appends its output to its context's store (`eventsource.streams.embedded`).

Transforms keep no state: each output depends on its input record alone,
so a transform restarted anywhere, or run again from offset zero, writes
the same records. Per-key state (counts, windows, running totals) belongs
in a projection, whose view commits with its positions; a projection can
read a transform's output topic like any other.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from eventsource.bus.foreign import ForeignTopic
from eventsource.errors import ConfigurationError
from eventsource.events.base import Event

E = TypeVar("E", bound=Event)
Out = TypeVar("Out", bound=Event)

# A record between two steps: its key (the output's Kafka key and aggregate
# id) and its value.
Keyed = tuple[str, Event]
Step = Callable[[str, Event], Iterable[Keyed]]

_NAME = re.compile(r"^[a-z][a-z0-9_.\-]{0,99}$")
_TOPIC = re.compile(r"^[a-z][a-z0-9_\-]*\.[a-z][a-z0-9_\-]*$")
FAILURES = ("stop", "park")


@dataclass(frozen=True)
class Source:
    """One input topic and the event classes read from it (others are skipped)."""

    topic: str
    types: tuple[type[Event], ...]


@dataclass(frozen=True)
class Branch:
    """The steps that records of one source go through, in order."""

    source: Source
    steps: tuple[Step, ...] = ()

    def then(self, step: Step) -> Branch:
        return Branch(self.source, (*self.steps, step))

    def accepts(self, event: Event) -> bool:
        return isinstance(event, self.source.types)

    def run(self, event: Event) -> list[Keyed]:
        """The records `event` becomes after every step (its key: its aggregate id)."""
        records: list[Keyed] = [(event.aggregate_id, event)]
        for step in self.steps:
            records = [out for key, value in records for out in step(key, value)]
            if not records:
                break
        return records


class Stream(Generic[E]):
    """Records of one or more topics on their way to an output topic.

    Each method returns a new stream; nothing runs until a runner executes
    the `Transform` that `to()` returns. The functions given get the events
    themselves (metadata included: `aggregate_id`, `occurred_at`, ...) and
    must not depend on anything but their argument.
    """

    def __init__(self, branches: Iterable[Branch]) -> None:
        self._branches = tuple(branches)

    @property
    def branches(self) -> tuple[Branch, ...]:
        """One per input topic: its source and the steps its records go through."""
        return self._branches

    def _then(self, step: Step) -> Stream[Any]:
        return Stream(branch.then(step) for branch in self._branches)

    def map(self, function: Callable[[E], Out]) -> Stream[Out]:
        """Each event becomes `function(event)`, an event of the output topic."""

        def step(key: str, value: Event) -> Iterator[Keyed]:
            yield key, _event(function(value), "map")  # type: ignore[arg-type]

        return self._then(step)

    def filter(self, predicate: Callable[[E], bool]) -> Stream[E]:
        """Only the events for which `predicate(event)` is true go on."""

        def step(key: str, value: Event) -> Iterator[Keyed]:
            if predicate(value):  # type: ignore[arg-type]
                yield key, value

        return self._then(step)

    def flat_map(self, function: Callable[[E], Iterable[Out]]) -> Stream[Out]:
        """Each event becomes the events `function(event)` returns: none, one or many."""

        def step(key: str, value: Event) -> Iterator[Keyed]:
            for out in function(value):  # type: ignore[arg-type]
                yield key, _event(out, "flat_map")

        return self._then(step)

    def key_by(self, function: Callable[[E], str]) -> Stream[E]:
        """Re-key: each event's output key (and aggregate id) becomes `function(event)`.

        Records of one key stay in order only as far as they came from one
        input partition: re-keying merges keys that were apart.
        """

        def step(key: str, value: Event) -> Iterator[Keyed]:
            new_key = function(value)  # type: ignore[arg-type]
            if not isinstance(new_key, str) or not new_key:
                raise TypeError(f"key_by must return a non-empty str, got {new_key!r}")
            yield new_key, value

        return self._then(step)

    def merge(self, *others: Stream[Any]) -> Stream[Event]:
        """This stream and `others` as one (each keeps the steps it had so far)."""
        return merge(self, *others)

    def to(
        self,
        topic: str,
        *,
        name: str | None = None,
        on_failure: str = "stop",
        dead_letter_topic: str | None = None,
    ) -> Transform:
        """Write the stream to `topic` (`<context>.<name>`): the finished transform.

        `name` (default: the output topic) names its consumer group,
        positions and transactional id; renaming it starts over from offset
        zero. `on_failure` is what happens to a record that cannot be read
        or whose function raises: `"stop"` (the default) stops the
        transform before anything of its batch is written; `"park"` writes
        it to the dead-letter topic (Kafka: `dead_letter_topic`, default
        `<name>.dead-letters`; embedded: the dead-letter table) and goes on.
        """
        return Transform(
            name=name or topic,
            output=topic,
            branches=self._branches,
            on_failure=on_failure,
            dead_letter_topic=dead_letter_topic,
        )


def stream(topic: str, *types: type[E]) -> Stream[E]:
    """The events of `types` on `topic` (a foreign topic: its own model)."""
    if isinstance(topic, ForeignTopic):
        if types and types != (topic.model,):
            raise ConfigurationError(
                f"foreign topic {str(topic)!r} is read as {topic.model.__qualname__}; do not"
                " name other event types"
            )
        types = (topic.model,)  # type: ignore[assignment]
    elif not isinstance(topic, str) or not _TOPIC.match(topic):
        raise ConfigurationError(
            f"stream({topic!r}): a topic is '<context>.<aggregate type>' (or a ForeignTopic)"
        )
    if not types:
        raise ConfigurationError(f"stream({topic!r}) needs the event classes it reads")
    for cls in types:
        if not (isinstance(cls, type) and issubclass(cls, Event)):
            raise ConfigurationError(f"stream({topic!r}) takes Event subclasses, got {cls!r}")
    return Stream([Branch(Source(topic, tuple(types)))])


def merge(*streams: Stream[Any]) -> Stream[Event]:
    """Several streams as one: `merge(stream("a.x", X), stream("b.y", Y)).map(...)`."""
    if not streams:
        raise ConfigurationError("merge() needs at least one stream")
    return Stream(branch for s in streams for branch in s.branches)


@dataclass(frozen=True)
class Transform:
    """A finished stream: its inputs, its steps and its output topic."""

    name: str
    output: str
    branches: tuple[Branch, ...]
    on_failure: str = "stop"
    dead_letter_topic: str | None = None
    topics: list[str] = field(init=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigurationError(
                f"transform name {self.name!r} must be lower case letters, digits, '_', '.'"
                " or '-', starting with a letter"
            )
        if not _TOPIC.match(self.output):
            raise ConfigurationError(
                f"transform {self.name!r}: output topic {self.output!r} is not of the form"
                " '<context>.<name>'"
            )
        if self.on_failure not in FAILURES:
            raise ConfigurationError(
                f"transform {self.name!r}: on_failure must be 'stop' or 'park',"
                f" got {self.on_failure!r}"
            )
        if not self.branches:
            raise ConfigurationError(f"transform {self.name!r} reads no topic")
        inputs = list(dict.fromkeys(b.source.topic for b in self.branches))
        if self.output in inputs:
            raise ConfigurationError(
                f"transform {self.name!r} reads its own output topic {self.output!r}"
            )
        object.__setattr__(self, "topics", inputs)

    @property
    def context(self) -> str:
        """The context the output topic belongs to."""
        return self.output.partition(".")[0]

    @property
    def output_type(self) -> str:
        """The output topic's name within its context: its records' aggregate type."""
        return self.output.partition(".")[2]

    @property
    def dead_letters(self) -> str:
        """The Kafka topic of records parked by `on_failure = "park"`."""
        return self.dead_letter_topic or f"{self.name}.dead-letters"

    def types(self, topic: str | None = None) -> tuple[type[Event], ...]:
        """The event classes read (from `topic`, or from every topic)."""
        found = [
            cls
            for branch in self.branches
            if topic is None or branch.source.topic == topic
            for cls in branch.source.types
        ]
        return tuple(dict.fromkeys(found))

    def apply(self, topic: str, event: Event) -> list[Keyed]:
        """What `event`, read from `topic`, becomes: `(key, event)` records, unstamped."""
        out: list[Keyed] = []
        for branch in self.branches:
            if branch.source.topic == topic and branch.accepts(event):
                out.extend(branch.run(event))
        return out

    def __repr__(self) -> str:
        return f"Transform({self.name!r}: {', '.join(self.topics)} -> {self.output})"


def _event(value: object, step: str) -> Event:
    if not isinstance(value, Event):
        raise TypeError(
            f"{step} must return Event instances (the output topic carries events),"
            f" got {type(value).__name__}"
        )
    return value
