"""Generate `docs/mqtt.md` from the payload models, so the docs cannot drift.

`python -m agent.messages.docs` rewrites the file; `tests/messages/test_docs.py` fails when
the committed file differs from what this module generates.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from agent.contracts import payloads
from agent.docgen import model_table


@dataclass(frozen=True)
class TopicDoc:
    topic: str
    direction: str
    qos: str
    retained: str
    model: type[BaseModel] | None
    summary: str


def topic_docs() -> list[TopicDoc]:
    """Every topic of the product with its payload model."""
    return (
        _device_topics()
        + _event_topics()
        + _snapshot_and_ha_topics()
        + _ota_and_ack_topics()
        + _config_topics()
    )


def _device_topics() -> list[TopicDoc]:
    """What the device publishes on its own: status, detections, health."""
    return [
        TopicDoc(
            "edge/<device>/status",
            "device → all",
            "1",
            "yes",
            payloads.StatusMessage,
            "`online` on every connect; `offline` as the last will (unclean loss) and "
            "explicitly on a clean stop. A fresh subscription gets the latest.",
        ),
        TopicDoc(
            "edge/<device>/cameras/<camera>/detections",
            "device → operators",
            "`mqtt.detections_qos` (default 1)",
            "no",
            payloads.DetectionMessage,
            "One message per processed frame (`source: yolo`, stream `detections`; empty "
            "frames unless `mqtt.publish_empty: false`), and for hard frames a second message "
            "`source: florence2` in the camera's own `florence2` stream (its own `seq`), with "
            "`refines` = the YOLO message's `seq`. Each carries `oldest_unacked_seq`, filled in "
            "by the publisher every time it (re)publishes the message.",
        ),
        TopicDoc(
            "edge/<device>/health",
            "device → all",
            "0",
            "no",
            payloads.HealthMessage,
            "Periodic metrics every `health.interval_s`.",
        ),
    ]


def _event_topics() -> list[TopicDoc]:
    """What tracking and events add: events (outbox stream `events`), zone and line counts."""
    from agent.contracts.events import EventMessage, LineCount

    return [
        TopicDoc(
            "edge/<device>/cameras/<camera>/events",
            "device → operators",
            "`mqtt.detections_qos` (default 1)",
            "no",
            EventMessage,
            "Tracked-object events (`events.enabled`, needs `tracking.enabled`): one `new` when "
            "a track is confirmed, `update` only on a meaningful change (zone entered or left, "
            "line crossed, stationary toggled, better snapshot), exactly one `end` per `new` "
            "(lost, clean stop, model swap, or `restart`: closed by the next start after a "
            "crash). Through the outbox on the camera's own stream `events` (own `seq`, "
            "`oldest_unacked_seq`), with the guarantees of detections.",
        ),
        TopicDoc(
            "edge/<device>/cameras/<camera>/zones/<zone>/<label>",
            "device → operators",
            "1",
            "yes",
            None,
            "Number of tracked `<label>` objects now in the zone, as plain integer text (`0` "
            "when the last one left). `<label>` is the class name in lower case with every "
            "character outside `[a-z0-9-]` replaced by `-`. Published on change.",
        ),
        TopicDoc(
            "edge/<device>/cameras/<camera>/lines/<line>/<label>",
            "device → operators",
            "1",
            "yes",
            LineCount,
            "Crossings of the line by tracked `<label>` objects since this daemon started "
            "(counts are per boot, not persisted). `in` is a crossing from the right of the "
            "line's direction (first point to second) to its left. Published on change.",
        ),
    ]


def _snapshot_and_ha_topics() -> list[TopicDoc]:
    """Snapshots, camera-wide counts and Home Assistant discovery."""
    return [
        TopicDoc(
            "edge/<device>/cameras/<camera>/objects/<label>",
            "device → operators",
            "1",
            "yes",
            None,
            "Number of confirmed tracked `<label>` objects now on the camera (events open), as "
            "plain integer text (`0` when the last one ended). `<label>` as in zone counts: "
            "lower case, every character outside `[a-z0-9-]` replaced by `-`.",
        ),
        TopicDoc(
            "edge/<device>/cameras/<camera>/snapshot/<label>",
            "device → operators",
            "1",
            "yes",
            None,
            "The JPEG bytes (not JSON) of the latest event snapshot of `<label>` on the camera: "
            "the full frame with the box drawn. Published once the file under "
            "`<state_dir>/snapshots/` is completely written (the event's `snapshot.path`), at "
            "the event's `end` and on a better frame at most every `snapshots.min_interval_s`; "
            "at most `snapshots.publish_max_bytes` (re-encoded smaller when needed). Files are "
            "written off the inference thread, so the event naming a file may arrive a moment "
            "before the file is complete; the retained JPEG never does.",
        ),
        TopicDoc(
            "homeassistant/device/<device>/config",
            "device → Home Assistant",
            "1",
            "yes",
            None,
            "Home Assistant device discovery (`homeassistant.enabled`; the prefix is "
            "`homeassistant.discovery_prefix`): `dev`, `o`, `availability` (the status topic) "
            "and `cmps` with stable `unique_id`s. Published again whenever `online` arrives on "
            "`homeassistant/status`. See docs/homeassistant.md.",
        ),
    ]


def _ota_and_ack_topics() -> list[TopicDoc]:
    """The device's exchanges with the gateway: OTA commands and state, signed acks."""
    from agent.contracts.ack import AckMessage
    from agent.contracts.ota import OtaCommand, OtaStateMessage

    return [
        TopicDoc(
            "edge/<device>/ota/command",
            "gateway → device",
            "1",
            "no",
            OtaCommand,
            "Signed OTA command (see docs/ota.md for signing and validation).",
        ),
        TopicDoc(
            "edge/<device>/ota/state",
            "device → gateway",
            "1",
            "yes",
            OtaStateMessage,
            "OTA state machine position, progress and reason on failure (the detector).",
        ),
        TopicDoc(
            "edge/<device>/ota/florence2/state",
            "device → gateway",
            "1",
            "yes",
            OtaStateMessage,
            "The same for the Florence-2 fallback model (`kind: florence2` manifests), which "
            "has its own slot: commands, probation and rollback (docs/ota.md).",
        ),
        TopicDoc(
            "edge/<device>/ack",
            "gateway → device",
            "1",
            "no",
            AckMessage,
            "Application acks (`edge.ack/2`, one cumulative entry per stream), signed with a "
            "gateway key and sent by the gateway's detection archive (`archive.enabled`) once "
            "it has durably stored the messages: with `outbox.require_gateway_ack` the outbox "
            "deletes a message only when a verified ack covers it. Unsigned, badly signed, "
            "unknown-key and other-device acks delete nothing and are counted "
            "(`acks_refused` in `health`); see docs/delivery.md.",
        ),
    ]


def _config_topics() -> list[TopicDoc]:
    """Camera config pushed from the gateway and the device's answer (docs/cameras.md)."""
    from agent.contracts.config_command import ConfigCommand, ConfigStateMessage

    return [
        TopicDoc(
            "edge/<device>/config/command",
            "gateway → device",
            "1",
            "no",
            ConfigCommand,
            "Signed camera-config push (`edge-gateway config push`): the device's `cameras:` "
            "section, checked like an OTA command (gateway signature, device, expiry, replay, "
            "sequence), then validated, written under the state dir and applied by a reload.",
        ),
        TopicDoc(
            "edge/<device>/config/state",
            "device → gateway",
            "1",
            "yes",
            ConfigStateMessage,
            "The answer to the latest push: `applied` with the running `config_sha256`, or "
            "`rejected` with a reason (the running cameras untouched).",
        ),
    ]


def render() -> str:
    """The full text of docs/mqtt.md."""
    out = [
        "# MQTT topics and payloads",
        "",
        "Generated by `python -m agent.messages.docs` from the pydantic models in",
        "`agent/contracts/payloads.py`, `agent/contracts/ota.py`, `agent/contracts/ack.py` and",
        "`agent/contracts/config_command.py`;",
        "a test fails when this file and the models disagree. Do not edit by hand.",
        "",
        "The prefix (`edge`) is `mqtt.topic_prefix`. Device and camera ids match",
        "`[a-z0-9][a-z0-9-]{0,62}`; anything else is refused at start. Payloads are UTF-8 JSON.",
        "",
        "## Duplicates and gaps",
        "",
        "Delivery is at-least-once (see `docs/delivery.md`): after a reconnect or a restart the",
        "device replays what it has not seen acknowledged, so **consumers must drop duplicates**",
        "by the key `(device, camera, boot_id, stream, seq)`. Each stream of a camera",
        "(`detections` for `source: yolo`, `florence2` for `source: florence2`, `events`)",
        "starts at seq 0",
        "at boot and grows by exactly 1 per message: a gap is a message lost to a counted",
        "overflow (`publish_queue_dropped`, `outbox_dropped` in `health`). A gap below a",
        "message's `oldest_unacked_seq` will never be filled (the device no longer holds it).",
        "",
        "## Topics",
        "",
        "| topic | direction | QoS | retained | payload |",
        "|---|---|---|---|---|",
    ]
    docs = topic_docs()
    for d in docs:
        name = d.model.__name__ if d.model else "-"
        out.append(f"| `{d.topic}` | {d.direction} | {d.qos} | {d.retained} | {name} |")
    out.append("")
    seen: set[type[BaseModel]] = set()
    for d in docs:
        out += [f"## `{d.topic}`", "", d.summary, ""]
        if d.model is not None:
            seen.add(d.model)
            out += model_table(d.model, seen)
    return "\n".join(out).rstrip() + "\n"


DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "mqtt.md"


def main() -> None:
    DOC_PATH.write_text(render())
    sys.stdout.write(f"wrote {DOC_PATH}\n")


if __name__ == "__main__":
    main()
