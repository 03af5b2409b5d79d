"""Detection payload rules: stream matches source, the low-water mark, ids like the ack's."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from agent.contracts.payloads import DetectionMessage
from tests.helpers.messages import detection_payload


def _raw(**change: Any) -> dict[str, Any]:
    raw = json.loads(detection_payload(5, boot_id="b1b1b1b1"))
    raw.update(change)
    return raw


def test_stream_follows_source_when_absent() -> None:
    """A message without `stream` (an older producer) gets the stream of its source."""
    raw = _raw(source="florence2", refines=5)
    del raw["stream"]
    assert DetectionMessage.model_validate(raw).stream == "florence2"
    raw = _raw()
    del raw["stream"]
    assert DetectionMessage.model_validate(raw).stream == "detections"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"source": "florence2", "stream": "detections"}, "belongs to stream florence2"),
        ({"source": "yolo", "stream": "florence2"}, "belongs to stream detections"),
        ({"stream": "events"}, "stream"),  # events have their own payload, not this one
        ({"oldest_unacked_seq": 6}, "oldest_unacked_seq must be <= seq"),  # above its own seq
        ({"boot_id": "boot-1"}, "boot_id"),  # not hex: not a boot id an ack could name
        ({"camera": "Cam/1"}, "camera"),  # not a valid camera id
    ],
)
def test_inconsistent_messages_are_refused(change: dict[str, Any], match: str) -> None:
    """Each rule of the detection payload refuses a message that breaks it."""
    with pytest.raises(ValidationError, match=match):
        DetectionMessage.model_validate(_raw(**change))


def test_oldest_unacked_seq_is_the_last_field() -> None:
    """The publisher stamps the mark in place: it must be the last field as dumped."""
    assert list(json.loads(detection_payload(0, boot_id="b1b1b1b1")))[-1] == "oldest_unacked_seq"
