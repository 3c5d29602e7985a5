"""The e-commerce sample: customers, orders, shipping and payments on eventsource."""
