"""What the dashboard reads, opened so that it cannot write.

Every context's store gets an engine of its own whose connections refuse
writes at the database (`PRAGMA query_only` on SQLite, read-only
transactions on PostgreSQL), on top of the dashboard only ever calling read
APIs. A database that does not exist, or holds no eventsource tables, is
refused before anything connects (SQLite would create an empty file).

One `Sources` belongs to the sampler's thread, which alone uses it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, event

from eventsource.bus.base import LogConsumer
from eventsource.errors import ConfigurationError
from eventsource.projections.base import Consumer, Reactor
from eventsource.projections.runner import group_id, load_class
from eventsource.settings import Settings, check_context, redact
from eventsource.store.eventstore import EventStore
from eventsource.streams.embedded import reactor_for
from eventsource.streams.runtime import load_transform
from eventsource.streams.topology import Transform

if TYPE_CHECKING:
    from eventsource.bus.relay import Relay

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Watched:
    """A projection or reactor on the page, and the context whose database
    holds its views, positions, dead letters and deadlines."""

    cls: type[Consumer]
    context: str

    @property
    def name(self) -> str:
        return self.cls.name

    @property
    def kind(self) -> str:
        return "reactor" if issubclass(self.cls, Reactor) else "projection"


@dataclass(frozen=True)
class WatchedTransform:
    """A transform on the page. `context` is its output's: on the embedded
    log its store holds the transform's output, positions and dead letters."""

    transform: Transform

    @property
    def name(self) -> str:
        return self.transform.name

    @property
    def context(self) -> str:
        return self.transform.context

    @property
    def kind(self) -> str:
        return "transform"

    def reactor(self) -> Watched:
        """The reactor that runs the transform on the embedded log, as a watched consumer."""
        return Watched(reactor_for(self.transform, self.context), self.context)


def watched(spec: str, default_context: str) -> Watched | WatchedTransform:
    """`package.module:Class` (of `default_context`) or `context=package.module:Class`,
    or `package.module:name` of a transform (of its output's context)."""
    context, equals, path = spec.partition("=")
    if not equals:
        context, path = default_context, spec
    try:
        return WatchedTransform(load_transform(path.strip()))
    except ConfigurationError:
        pass  # not a transform: a projection or reactor, or an error that says why not
    return Watched(load_class(path.strip()), check_context(context.strip()))


def read_only(engine: Engine) -> Engine:
    """`engine`, with every connection it opens from now on refusing writes."""

    def refuse_writes(dbapi_connection: Any, _record: object) -> None:
        if engine.dialect.name == "sqlite":
            dbapi_connection.execute("PRAGMA query_only = ON")
            return
        # psycopg opens a transaction for the SET: end it, so that the
        # setting holds for the session and the pool gets a clean connection.
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        dbapi_connection.commit()

    event.listen(engine, "connect", refuse_writes)
    engine.dispose()  # connections opened before the hook (the tables check) lack it
    return engine


class Sources:
    """Read-only stores of every context in `settings`, and a log consumer per
    watched consumer (made on first use: on Kafka each one is a client)."""

    def __init__(
        self,
        settings: Settings,
        watched: Iterable[Watched | WatchedTransform],
        engines: Mapping[str, Engine],
    ) -> None:
        """`engines`: context -> an engine on its existing database (made
        read-only here, and disposed of by `close`)."""
        self.settings = settings
        self.watched = list(watched)
        for w in self.watched:
            # On Kafka a transform needs no database: its progress is its group's offsets.
            on_kafka = isinstance(w, WatchedTransform) and not settings.embedded
            if w.context not in engines and not on_kafka:
                raise ConfigurationError(
                    f"{w.name} belongs to context {w.context!r}, whose database is not"
                    f" configured (known: {', '.join(sorted(engines))}); add it to --stores"
                )
        self.stores = {
            context: EventStore(read_only(engine), context=context)
            for context, engine in engines.items()
        }
        self._logs: dict[str, LogConsumer] = {}
        self._relays: dict[str, Relay] = {}

    @property
    def embedded(self) -> bool:
        return self.settings.embedded

    def log(self, w: Watched | WatchedTransform) -> LogConsumer:
        """The log consumer that reads `w`'s partitions' ends (never joins its group)."""
        found = self._logs.get(w.name)
        if found is None:
            found = self._logs[w.name] = self._new_log(w.name)
        return found

    def _new_log(self, name: str) -> LogConsumer:
        if self.embedded:
            from eventsource.bus.sqllog import SqlLogConsumer

            return SqlLogConsumer(self.stores)
        from eventsource.bus.config import KafkaConfig
        from eventsource.bus.kafka import KafkaLogConsumer

        # Like `projection status`: a group of its own, and partitions
        # assigned by hand, so the workers' group never rebalances for it.
        return KafkaLogConsumer(
            KafkaConfig.from_settings(self.settings),
            group_id=group_id(f"{name}.dashboard", self.settings.topic_prefix),
        )

    def relay(self, context: str) -> Relay | None:
        """What reads the context's topics' tails on Kafka (None in embedded mode)."""
        if self.embedded:
            return None
        found = self._relays.get(context)
        if found is None:
            from eventsource.bus.config import KafkaConfig
            from eventsource.bus.relay import Relay

            # Only its read side is used (`tails`): no producer, so nothing fenced.
            found = Relay(self.stores[context], KafkaConfig.from_settings(self.settings))
            self._relays[context] = found
        return found

    def describe(self) -> dict[str, str]:
        """Context -> database URL, safe to show (no password)."""
        return {
            context: store.engine.url.render_as_string(hide_password=True)
            for context, store in self.stores.items()
        }

    def secrets(self) -> list[str]:
        """The databases' passwords and Kafka's secrets, to blank out of any error shown."""
        found = [str(s.engine.url.password) for s in self.stores.values() if s.engine.url.password]
        if not self.embedded:
            config = self.settings.librdkafka_config()
            masked = redact(config)
            found += [value for key, value in config.items() if masked[key] != value]
        return [s for s in found if s]

    def close(self) -> None:
        for relay in self._relays.values():
            relay.close()
        for consumer in self._logs.values():
            consumer.close()
        for store in self.stores.values():
            store.close()
            store.engine.dispose()  # the store does not own an engine it was given
        self._relays.clear()
        self._logs.clear()
        self.stores.clear()
