"""Contract tests that a backend of one of eventsource's seams runs in its own suite.

Like SQLAlchemy's shipped test suite for dialects: eventsource runs these
against its own backends, and a third-party backend subclasses them::

    from eventsource.testing.contracts import LogConsumerContract, LogUnderTest

Needs pytest.
"""

from eventsource.testing.contracts.domain import populate as populate
from eventsource.testing.contracts.domain import read_all as read_all
from eventsource.testing.contracts.log_consumer import LogConsumerContract as LogConsumerContract
from eventsource.testing.contracts.log_consumer import LogUnderTest as LogUnderTest
from eventsource.testing.contracts.log_consumer import by_partition as by_partition
from eventsource.testing.contracts.log_consumer import positions as positions
from eventsource.testing.contracts.log_consumer import read_to_end as read_to_end

__all__ = [
    "LogConsumerContract",
    "LogUnderTest",
    "by_partition",
    "populate",
    "positions",
    "read_all",
    "read_to_end",
]
