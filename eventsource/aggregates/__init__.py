"""Aggregates: the `Aggregate` base, `on` handlers, the `Repository` and snapshots."""

from eventsource.aggregates.base import Aggregate as Aggregate
from eventsource.aggregates.base import caused_by as caused_by
from eventsource.aggregates.base import on as on
from eventsource.aggregates.repository import Repository as Repository

__all__ = ["Aggregate", "Repository", "caused_by", "on"]
