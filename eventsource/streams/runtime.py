"""Finding a transform by import path, and running it where the settings say.

On Kafka (`EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS` set) a `TransformRunner`
runs it, with no database; on the embedded log a worker runs it as a
reactor of the process's context, whose store takes its output.
"""

from __future__ import annotations

import importlib
import os
import sys

from eventsource.bus.config import KafkaConfig
from eventsource.errors import ConfigurationError
from eventsource.identity import Identity
from eventsource.projections.base import Consumer, Reactor
from eventsource.projections.runner import Runtime
from eventsource.projections.worker import Worker
from eventsource.settings import Settings
from eventsource.streams.embedded import reactor_for
from eventsource.streams.kafka import TransformRunner
from eventsource.streams.topology import Transform


def load_transform(path: str) -> Transform:
    """The transform named `package.module:attribute` (a `Transform`, made by `.to()`)."""
    module_name, colon, attribute = path.partition(":")
    if not colon or not module_name or not attribute:
        raise ConfigurationError(f"{path!r} is not an import path of the form package.module:name")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        looked = os.pathsep.join(p or "." for p in sys.path[:1])
        raise ConfigurationError(
            f"cannot import {module_name!r} for {path!r}: {exc} (looked in {looked} and the"
            " installed packages; run from your app's folder, pass --app-dir, or set PYTHONPATH)"
        ) from exc
    found: object = module
    for part in attribute.split("."):
        found = getattr(found, part, None)
        if found is None:
            raise ConfigurationError(f"{module_name!r} has no {attribute!r}")
    if isinstance(found, type) and issubclass(found, Consumer):
        raise ConfigurationError(
            f"{path!r} is a {'reactor' if issubclass(found, Reactor) else 'projection'}, not a"
            " transform: `eventsource projection run` and"
            " `projection status` take it"
        )
    if not isinstance(found, Transform):
        raise ConfigurationError(
            f"{path!r} is a {type(found).__name__}, not a transform (made by stream(...).to(...))"
        )
    return found


def kafka_runner(transform: Transform, settings: Settings, *, batch_size: int) -> TransformRunner:
    """The runner of `transform` on the Kafka of `settings`.

    The worker name (`EVENTSOURCE_WORKER_NAME`) names the process among the
    transform's processes and makes it a static member of the group.
    """
    name = settings.worker_name
    return TransformRunner(
        transform,
        KafkaConfig.from_settings(settings),
        member=name,
        static=name is not None,
        batch_size=batch_size,
        consumer_options={"client.id": Identity.of_this_process(name).name},
    )


def embedded_worker(transform: Transform, runtime: Runtime, *, batch_size: int) -> Worker:
    """A worker that runs `transform` on the embedded log, as a reactor of the runtime's context."""
    return runtime.worker(reactor_for(transform, runtime.settings.context), batch_size=batch_size)
