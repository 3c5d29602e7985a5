"""Projections and reactors: consume the log exactly once into a context's own database."""

from eventsource.projections.base import Projection as Projection
from eventsource.projections.base import Reactor as Reactor
from eventsource.projections.base import handles as handles
from eventsource.projections.reaction import Reaction as Reaction
from eventsource.projections.view import View as View
from eventsource.projections.worker import Worker as Worker

__all__ = ["Projection", "Reaction", "Reactor", "View", "Worker", "handles"]
