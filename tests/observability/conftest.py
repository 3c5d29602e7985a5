"""The projection tests' two setups (embedded SQLite, Kafka + PostgreSQL) serve here too."""

from tests.projections.conftest import harness

__all__ = ["harness"]
