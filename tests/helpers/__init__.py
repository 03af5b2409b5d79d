"""Shared test helpers: real brokers, free ports, processes."""
