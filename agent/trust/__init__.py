"""Who is trusted to say what: ed25519 keys, signing and verification of wire objects, and the
agent config's `trust:` section. Used by the device (OTA, acks, config pushes) and the gateway."""
