"""Customers: who buys, and where they live."""
