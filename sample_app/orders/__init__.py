"""Orders: what is bought and paid. It knows nothing of shipping; it records events."""
