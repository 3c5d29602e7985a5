"""One checkout of the sample app, traced, in a process of its own.

The process sets an OpenTelemetry tracer provider with an in-memory
exporter (a process-wide setting, so not in the test's own process),
registers a customer and places and pays an order inside an application
span, relays customers and orders to Kafka, runs shipping's address book
and its reactor from Kafka, and prints every finished span as JSON lines.

    python -m tests.observability.trace_scenario <kafka servers> <folder>
"""

from __future__ import annotations

import json
import sys
import uuid
from decimal import Decimal
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from eventsource import EventStore, Repository, Worker
from eventsource.bus.admin import TopicAdmin
from eventsource.bus.config import KafkaConfig
from eventsource.bus.kafka import KafkaLogConsumer
from eventsource.bus.relay import Relay
from sample_app.customers.domain import Customer
from sample_app.customers.events import Address
from sample_app.orders.domain import Order
from sample_app.shipping.reactor import ShipPaidOrders
from sample_app.shipping.views import AddressBook


def main(servers: str, folder: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    kafka = KafkaConfig(servers, partitions=3, topic_prefix=f"trace{uuid.uuid4().hex[:8]}.")
    urls = {ctx: f"sqlite:///{folder / ctx}.db" for ctx in ("customers", "orders", "shipping")}
    stores = {
        ctx: EventStore(url, context=ctx, keys={"customers": urls["customers"]})
        for ctx, url in urls.items()
    }
    try:
        for store in stores.values():
            store.create_schema()
        with trace.get_tracer("shop").start_as_current_span("POST /checkout"):
            address = Address(street="1 Loop Road", city="Leeds", postcode="LS1 1AA", country="GB")
            Repository(stores["customers"], Customer).save(
                Customer.register("c-ada", "Ada", "ada@example.com", address)
            )
            order = Order.place("o-1", "c-ada", Decimal("12.50"))
            order.pay()
            Repository(stores["orders"], Order).save(order)
        for ctx in ("customers", "orders"):
            with Relay(stores[ctx], kafka) as relay:
                relay.run(until_caught_up=True)
        group = uuid.uuid4().hex[:8]
        book = Worker(
            AddressBook(),
            KafkaLogConsumer(kafka, group_id=f"book-{group}"),
            engine=stores["shipping"].engine,
            codec=stores["shipping"].codec,
        )
        book.run(until_caught_up=True)
        book.close()
        reactor = Worker(
            ShipPaidOrders(),
            KafkaLogConsumer(kafka, group_id=f"ship-{group}"),
            store=stores["shipping"],
        )
        reactor.run(until_caught_up=True)
        reactor.close()
    finally:
        for store in stores.values():
            store.close()
        admin = TopicAdmin(kafka)
        admin.delete(admin.list_topics(kafka.topic_prefix))
    for span in exporter.get_finished_spans():
        context = span.get_span_context()
        assert context is not None
        print(
            json.dumps(
                {
                    "name": span.name,
                    "trace": f"{context.trace_id:032x}",
                    "span": f"{context.span_id:016x}",
                    "parent": f"{span.parent.span_id:016x}" if span.parent else None,
                    "links": [f"{link.context.trace_id:032x}" for link in span.links],
                    "attributes": dict(span.attributes or {}),
                }
            )
        )


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
