"""The SQL event store on SQLAlchemy Core (SQLite and PostgreSQL)."""

from eventsource.store.eventstore import EventStore as EventStore

__all__ = ["EventStore"]
