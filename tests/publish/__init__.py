"""Tests of agent.publish: outbox, publisher, delivery under faults, broker config and ACLs."""
