"""make soak: a bounded load and correctness run against the local stack."""
