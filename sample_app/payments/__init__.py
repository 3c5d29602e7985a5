"""Payments: card authorization attempts, and the fraud window over them."""
