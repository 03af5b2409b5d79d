"""The Live page's memory: retained snapshots and counts in, cleared by empty payloads."""

from __future__ import annotations

from agent.gateway.web.live import LiveCache, camera_view

BASE = "edge/jet-0/cameras/door"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32


def cache() -> LiveCache:
    return LiveCache("edge", clock=lambda: 100.0)


def test_snapshot_kept_with_its_label_and_cleared_by_an_empty_retained_message() -> None:
    """A JPEG is kept under its label; an empty payload for that label clears it."""
    c = cache()
    c.on_extra(f"{BASE}/snapshot/person", JPEG)
    got = c.get("jet-0", "door")
    assert got is not None and got.snapshot == JPEG and got.snapshot_label == "person"
    c.on_extra(f"{BASE}/snapshot/car", b"")  # another label's clear leaves it
    assert c.get("jet-0", "door").snapshot == JPEG  # type: ignore[union-attr]
    c.on_extra(f"{BASE}/snapshot/person", b"")
    assert c.get("jet-0", "door").snapshot is None  # type: ignore[union-attr]


def test_a_snapshot_that_is_not_a_jpeg_is_not_kept() -> None:
    """Only JPEG bytes are served back as image/jpeg."""
    c = cache()
    c.on_extra(f"{BASE}/snapshot/person", b"<html>not a picture</html>")
    assert c.get("jet-0", "door").snapshot is None  # type: ignore[union-attr]


def test_zone_and_line_counts_as_lines_of_text() -> None:
    """A zone count is its integer; a line count reads in/out/since; empty clears."""
    c = cache()
    c.on_extra(f"{BASE}/zones/yard/person", b"2")
    c.on_extra(f"{BASE}/lines/gate/car", b'{"in": 3, "out": 1, "since": "T0"}')
    view = camera_view("jet-0", "door", c.get("jet-0", "door"), 100.0)  # type: ignore[arg-type]
    assert view["zones"] == [("line gate car", "in 3, out 1 since T0"), ("zone yard person", "2")]
    c.on_extra(f"{BASE}/zones/yard/person", b"")
    assert c.get("jet-0", "door").zones == {"line gate car": "in 3, out 1 since T0"}  # type: ignore[union-attr]


def test_topics_of_another_prefix_or_shape_are_ignored() -> None:
    """Nothing outside `<prefix>/<device>/cameras/<camera>/...` creates a camera."""
    c = cache()
    c.on_extra("other/jet-0/cameras/door/zones/yard/person", b"1")
    c.on_extra(f"{BASE}/zones/yard", b"1")
    c.on_extra(f"{BASE}/objects/person", b"1")
    assert c.cameras() == []
