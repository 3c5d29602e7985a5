"""The SQL event store on SQLAlchemy Core (SQLite and PostgreSQL)."""

from eventsource.store.eventstore import EventStore as EventStore
from eventsource.store.migrate import upgrade_schema as upgrade_schema

__all__ = ["EventStore", "upgrade_schema"]
