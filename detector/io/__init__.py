"""Reading logs: the canonical event schema and its validation, gateway-log adapters, and the
account and label tables."""
