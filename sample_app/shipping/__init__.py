"""Shipping: a local copy of customer addresses, and a shipment for each paid order.

It reads the customers' and orders' events and never calls either context.
"""
