"""Testing an eventsource app: scenarios for aggregates, projections and reactors.

::

    from eventsource.testing import given, stream

    def test_a_placed_order_can_be_paid() -> None:
        given(Order, OrderPlaced(customer_id="c-1", total=Decimal("10")), id="o-1").when(
            lambda order: order.pay()
        ).then(OrderPaid(customer_id="c-1", total=Decimal("10")))

Installing eventsource also installs a pytest plugin with the fixtures
`event_store` and `event_store_factory` (throwaway stores: SQLite, or
PostgreSQL when `EVENTSOURCE_TEST_DATABASE_URL` is set).
`eventsource.testing.contracts` holds the tests every `LogConsumer` backend
must pass. `docs/testing.md` shows it all.
"""

from eventsource.testing.aggregates import AggregateOutcome as AggregateOutcome
from eventsource.testing.aggregates import AggregateScenario as AggregateScenario
from eventsource.testing.clock import FakeClock as FakeClock
from eventsource.testing.consumers import ConsumerScenario as ConsumerScenario
from eventsource.testing.consumers import Scheduled as Scheduled
from eventsource.testing.scenario import given as given
from eventsource.testing.stores import ThrowawayStores as ThrowawayStores
from eventsource.testing.streams import Stream as Stream
from eventsource.testing.streams import stream as stream

__all__ = [
    "AggregateOutcome",
    "AggregateScenario",
    "ConsumerScenario",
    "FakeClock",
    "Scheduled",
    "Stream",
    "ThrowawayStores",
    "given",
    "stream",
]
