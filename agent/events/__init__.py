"""From tracks to meaning: zone/line geometry (pure), the event state machine (pure), the
open-event journal and the emitter that sends events through the outbox."""
