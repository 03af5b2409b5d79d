"""Topic names are built in one place and refuse unsafe ids."""

from __future__ import annotations

import pytest

from agent.contracts.topics import Topics, detections_filter, parse_device


def test_topics_follow_the_contract() -> None:
    """Each topic has the shape of the brief's table."""
    t = Topics("jetson-1")
    assert t.status == "edge/jetson-1/status"
    assert t.health == "edge/jetson-1/health"
    assert t.ota_command == "edge/jetson-1/ota/command"
    assert t.ota_state == "edge/jetson-1/ota/state"
    assert t.ack == "edge/jetson-1/ack"
    assert t.detections("cam-0") == "edge/jetson-1/cameras/cam-0/detections"
    assert Topics("d", prefix="site-a").status == "site-a/d/status"


@pytest.mark.parametrize(
    "bad",
    [
        "a/b",  # extra topic level
        "+",  # single-level wildcard
        "#",  # multi-level wildcard
        "A",  # upper case
        "",  # empty
        "-x",  # leading dash
        "x" * 64,  # too long
        "caf\u00e9",  # non-ASCII
    ],
)
def test_unsafe_ids_are_refused(bad: str) -> None:
    """A device or camera id that could escape its topic level raises ValueError."""
    with pytest.raises(ValueError):
        Topics(bad)
    with pytest.raises(ValueError):
        Topics("ok").detections(bad)


def test_filters_and_parsing() -> None:
    """Wildcard filters and device parsing agree with the topic builder."""
    assert detections_filter() == "edge/+/cameras/+/detections"
    assert parse_device("edge/jetson-1/status") == "jetson-1"
    assert parse_device("other/jetson-1/status") is None
    assert parse_device("edge/BAD/status") is None


def test_each_stream_has_its_topic() -> None:
    """YOLO and Florence-2 messages share the detections topic; events have their own."""
    t = Topics("dev-a")
    assert t.stream("detections", "cam1") == "edge/dev-a/cameras/cam1/detections"
    assert t.stream("florence2", "cam1") == "edge/dev-a/cameras/cam1/detections"
    assert t.stream("events", "cam1") == "edge/dev-a/cameras/cam1/events"
