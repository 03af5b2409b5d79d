"""The Home Assistant discovery payload: shape, topics, stable unique ids, templates."""

from __future__ import annotations

import json

import pytest

from agent.contracts.topics import Topics
from agent.homeassistant.counts import ObjectCounts
from agent.homeassistant.discovery import Area, CameraEntities, DeviceInfo, build, pick_labels

TOPICS = Topics("dev-1")
INFO = DeviceInfo(
    device="dev-1",
    name="Front yard",
    sw_version="0.1.0",
    cameras=(
        CameraEntities(
            camera="yard",
            labels=("person", "traffic light"),
            zones=(Area("driveway", ("person",)),),
            lines=(Area("gate", ("person",)),),
        ),
    ),
)


def payload() -> dict:
    return build(INFO, TOPICS)


def test_device_origin_availability() -> None:
    """`dev`, `o` and availability on the retained status topic's `state`."""
    p = payload()
    assert p["dev"]["ids"] == ["edge-dev-1"] and p["dev"]["name"] == "Front yard"
    assert p["o"]["name"] == "edge-agent" and p["o"]["sw"] == "0.1.0"
    (avail,) = p["availability"]
    assert avail["topic"] == "edge/dev-1/status"
    assert avail["value_template"] == "{{ value_json.state }}"
    json.dumps(p)  # JSON-ready


def test_every_entity_and_its_topic() -> None:
    """Per camera and label: occupancy, count, snapshot image; per zone: occupancy and count;
    per line: in and out; and the fps from health."""
    cmps = payload()["cmps"]
    by_uid = {c["unique_id"]: c for c in cmps.values()}
    assert set(cmps) == set(by_uid), "component ids are the unique ids"
    expect = {
        "edge_dev-1_yard_person_occupancy": (
            "binary_sensor",
            "edge/dev-1/cameras/yard/objects/person",
        ),
        "edge_dev-1_yard_person_count": ("sensor", "edge/dev-1/cameras/yard/objects/person"),
        "edge_dev-1_yard_traffic-light_count": (
            "sensor",
            "edge/dev-1/cameras/yard/objects/traffic-light",
        ),
        "edge_dev-1_yard_zone_driveway_person_occupancy": (
            "binary_sensor",
            "edge/dev-1/cameras/yard/zones/driveway/person",
        ),
        "edge_dev-1_yard_zone_driveway_person_count": (
            "sensor",
            "edge/dev-1/cameras/yard/zones/driveway/person",
        ),
        "edge_dev-1_yard_line_gate_person_in": (
            "sensor",
            "edge/dev-1/cameras/yard/lines/gate/person",
        ),
        "edge_dev-1_yard_line_gate_person_out": (
            "sensor",
            "edge/dev-1/cameras/yard/lines/gate/person",
        ),
        "edge_dev-1_fps": ("sensor", "edge/dev-1/health"),
    }
    for uid, (platform, topic) in expect.items():
        assert by_uid[uid]["p"] == platform and by_uid[uid]["state_topic"] == topic, uid
    image = by_uid["edge_dev-1_yard_person_snapshot"]
    assert image["p"] == "image" and image["content_type"] == "image/jpeg"
    assert image["image_topic"] == "edge/dev-1/cameras/yard/snapshot/person"
    assert len(cmps) == 2 * 3 + 2 + 2 + 1


def test_unique_ids_are_stable_and_distinct() -> None:
    """The same config gives byte-identical payloads (ids survive restarts); no id repeats."""
    assert json.dumps(payload(), sort_keys=True) == json.dumps(build(INFO, TOPICS), sort_keys=True)
    uids = [c["unique_id"] for c in payload()["cmps"].values()]
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize(
    ("uid", "message", "state"),
    [
        ("edge_dev-1_yard_person_occupancy", "2", "ON"),  # objects present
        ("edge_dev-1_yard_person_occupancy", "0", "OFF"),  # the last one left
        ("edge_dev-1_yard_person_occupancy", "", "OFF"),  # empty retained (cleared) topic
        ("edge_dev-1_yard_line_gate_person_in", '{"in": 3, "out": 1, "since": "x"}', "3"),
        ("edge_dev-1_yard_line_gate_person_out", '{"in": 3, "out": 1, "since": "x"}', "1"),
        ("edge_dev-1_fps", '{"fps": 9.5}', "9.5"),
    ],
)
def test_value_templates_render_like_home_assistant(uid: str, message: str, state: str) -> None:
    """The templates give Home Assistant the right state for our payloads (plain Jinja2)."""
    jinja2 = pytest.importorskip("jinja2")
    comp = {c["unique_id"]: c for c in payload()["cmps"].values()}[uid]
    try:
        value_json = json.loads(message)
    except json.JSONDecodeError:
        value_json = None
    out = jinja2.Environment().from_string(comp["value_template"])
    assert out.render(value=message, value_json=value_json).strip() == state


@pytest.mark.parametrize(
    ("own", "wanted", "expect"),
    [
        (None, None, ("person", "car", "dog")),  # nothing set: every class of the model
        (["car"], None, ("car",)),  # the zone's own filter
        (None, ["person"], ("person",)),  # homeassistant.labels
        (["car", "person"], ["person"], ("person",)),  # both: the intersection
        (["car", "car"], None, ("car",)),  # no repeats
    ],
)
def test_pick_labels(
    own: list[str] | None, wanted: list[str] | None, expect: tuple[str, ...]
) -> None:
    """Which labels get entities."""
    assert pick_labels(own, wanted, ("person", "car", "dog")) == expect


def test_object_counts_follow_new_and_end() -> None:
    """`new` adds, `end` removes, a repeated end never goes below zero; cameras are separate."""
    c = ObjectCounts()
    assert c.new("yard", "person", 1) == 1 and c.new("yard", "person", 2) == 2
    assert c.new("door", "person", 1) == 1
    assert c.end("yard", "person", 1) == 1 and c.end("yard", "person", 1) == 1
    assert c.end("yard", "person", 2) == 0 and c.count("door", "person") == 1
