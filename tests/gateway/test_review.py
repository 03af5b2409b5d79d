"""Review of intake items and `dataset build` against a real `edge-gateway serve`: items
uploaded through the intake HTTP path as devices do, reviewed with the CLI and the HTTP API,
built into an Ultralytics dataset with a gate set."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from agent.gateway.client import GatewayClient, GatewayClientError
from tests.gateway.conftest import ADMIN, ADMIN_TOKEN, Site, cli
from tests.gateway.intake_items import T0, jpeg, upload

DEV = "jet-1"
NAMES = ["person", "car"]
TWO_BOXES = "0 0.500000 0.500000 0.200000 0.200000\n1 0.300000 0.300000 0.100000 0.100000\n"
# (camera, stem, image seed, seconds after T0); cam-a: clusters {0,1,2}, {100,101}, {200};
# 200 is a byte copy of 100 (exact duplicate); cam-b: 400 re-encodes 300 (near-duplicate)
FRAMES = [
    ("cam-a", "a0", 1, 0), ("cam-a", "a1", 2, 1), ("cam-a", "a2", 3, 2),
    ("cam-a", "a100", 4, 100), ("cam-a", "a101", 5, 101), ("cam-a", "a200", 4, 200),
    ("cam-b", "b0", 6, 0), ("cam-b", "b50", 7, 50), ("cam-b", "b300", 8, 300),
    ("cam-b", "b400", -8, 400),
]  # fmt: skip


def image_of(seed: int) -> bytes:
    from io import BytesIO

    from PIL import Image

    if seed >= 0:
        return jpeg(seed)
    out = BytesIO()  # the same picture re-encoded at another quality: a near-duplicate
    Image.open(BytesIO(jpeg(-seed))).save(out, "JPEG", quality=80)
    return out.getvalue()


def pre_existing(site: Site) -> None:
    """An item already in intake/ before the review table existed (indexed at start)."""
    day = site.cfg.intake_dir / DEV / "cam-c" / "2027-01-14"
    day.mkdir(parents=True)
    (day / "old-1.jpg").write_bytes(jpeg(99))
    (day / "old-1.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (day / "old-1.json").write_text(json.dumps({"class_names": NAMES, "ts": T0 - 86400}))


def items(site: Site, *args: str) -> dict[str, Any]:
    return json.loads(cli(site.config, "dataset", "review", "list", "--json", *args).stdout)


def by_stem(site: Site) -> dict[str, dict[str, Any]]:
    return {i["stem"]: i for i in items(site, "--limit", "1000")["items"]}


@pytest.fixture
def reviewed(site: Site) -> Site:
    """A gateway with 10 uploaded items and 1 pre-existing one, ready for review."""
    pre_existing(site)
    site.gateway.start()
    site.gateway.enroll([DEV])
    for camera, stem, seed, dt in FRAMES:
        resp = upload(
            site.gateway.url, DEV, camera, stem, image_of(seed), TWO_BOXES, T0 + dt, NAMES
        )
        assert resp.status_code == 201, resp.text
    return site


def test_review_flow_with_bulk_filters_and_relabel(reviewed: Site) -> None:
    """Items start pending; bulk accept by filter, reject by id, relabel keeps the original;
    a bulk action without any filter needs --all."""
    site = reviewed
    listed = items(site)
    assert listed["total"] == 11 and listed["counts"]["pending"] == 11
    refused = cli(site.config, "dataset", "review", "accept", check=False)
    assert refused.returncode != 0 and "--all" in refused.stderr
    resp = site.gateway.post("/v1/review/accept", {"filter": {}})
    assert resp.status_code == 400 and resp.json()["reason"] == "needs_all"
    out = cli(site.config, "dataset", "review", "accept", "--camera", "cam-a").stdout
    assert "6 changed" in out
    cli(site.config, "dataset", "review", "accept", "--device", DEV, "--camera", "cam-b")
    stems = by_stem(site)
    cli(
        site.config,
        "dataset",
        "review",
        "reject",
        "--ids",
        stems["old-1"]["id"],
        "--reason",
        "blurry",
    )
    a1 = stems["a1"]["id"]
    cli(site.config, "dataset", "review", "relabel", "--ids", a1, "--box", "0=car", "--delete", "1")
    counts = items(site)["counts"]
    assert counts == {"pending": 0, "accepted": 9, "rejected": 1, "relabelled": 1}
    # a relabelled item stays relabelled when accepted again; the filter by class sees the edit
    cli(site.config, "dataset", "review", "accept", "--ids", a1)
    assert by_stem(site)["a1"]["status"] == "relabelled"
    assert "a1" in {i["stem"] for i in items(site, "--class", "car", "--camera", "cam-a")["items"]}
    assert "a1" not in {
        i["stem"] for i in items(site, "--class", "person", "--camera", "cam-a")["items"]
    }
    day_dir = next((site.cfg.intake_dir / DEV / "cam-a").iterdir())
    assert (day_dir / "a1.txt").read_text() == "1 0.500000 0.500000 0.200000 0.200000\n"
    sidecar = json.loads((day_dir / "a1.json").read_text())
    assert sidecar["review"]["original_labels"] == TWO_BOXES
    assert sidecar["class_names"] == NAMES  # the device's sidecar is kept
    detail = site.gateway.get(f"/v1/review/items/{a1}")
    assert detail["original_labels"] == TWO_BOXES and len(detail["boxes_list"]) == 1
    image = httpx.get(f"{site.gateway.url}/v1/review/items/{a1}/image", headers=ADMIN, timeout=10)
    assert image.content == image_of(2) and image.headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize(
    "item_id",
    [
        "..%2F..%2Fkeys%2Frelease.key",  # encoded separators
        "....",  # dots only
        "0123456789abcdeg",  # not hex
        "0123456789ABCDEF",  # upper case is not an id
        "%2Fetc%2Fpasswd",  # an absolute path
    ],
)
def test_path_tricks_on_item_ids_are_refused(reviewed: Site, item_id: str) -> None:
    """An id is 16 lower-case hex digits looked up in the database, never a path."""
    url = reviewed.gateway.url
    for path in (f"/v1/review/items/{item_id}", f"/v1/review/items/{item_id}/image"):
        resp = httpx.get(url + path, headers=ADMIN, timeout=10)
        assert resp.status_code in (400, 404), (path, resp.status_code)
        assert b"BEGIN" not in resp.content and b"root:" not in resp.content
    resp = reviewed.gateway.post(
        "/v1/review/accept", {"filter": {"ids": [item_id.replace("%2F", "/")]}}
    )
    assert resp.status_code == 400
    client = GatewayClient(url, ADMIN_TOKEN)
    with pytest.raises(GatewayClientError, match="16 hex digits"):
        client.review_item("../" + item_id)
    client.close()
