"""The Kafka demo test runs its Connect step on the Connect tests' worker fixture."""

from tests.connect.conftest import connect

__all__ = ["connect"]
