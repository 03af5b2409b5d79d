"""Wire contracts: everything two programs exchange (MQTT payloads, acks, the OTA protocol,
manifests, topic names and the canonical form signatures cover).

Both the device and the gateway import this package; it imports nothing but pydantic and the
standard library (a test enforces it), so neither side depends on the other's internals.
"""
