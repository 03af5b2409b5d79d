"""Review of intake items and `dataset build` against a real `edge-gateway serve`: items
uploaded through the intake HTTP path as devices do, reviewed with the CLI and the HTTP API,
built into an Ultralytics dataset with a gate set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from agent.gateway.client import GatewayClient, GatewayClientError
from agent.util.dataset_hash import gate_set_sha256
from agent.util.files import file_sha256
from tests.gateway.conftest import ADMIN, ADMIN_TOKEN, Site, cli
from tests.gateway.intake_items import T0, jpeg, make_base, upload
from tests.gateway.review_cli import run

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
    return json.loads(run(site.config, "dataset", "review", "list", "--json", *args).output)


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
    out = run(site.config, "dataset", "review", "accept", "--camera", "cam-a").output
    assert "6 changed" in out
    run(site.config, "dataset", "review", "accept", "--device", DEV, "--camera", "cam-b")
    stems = by_stem(site)
    run(
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
    run(site.config, "dataset", "review", "relabel", "--ids", a1, "--box", "0=car", "--delete", "1")
    client = GatewayClient(site.gateway.url, ADMIN_TOKEN)
    facets = client.review_facets()
    client.close()
    assert facets["cameras"] == ["cam-a", "cam-b", "cam-c"] and facets["classes"] == NAMES[::-1]
    counts = items(site)["counts"]
    assert counts == {"pending": 0, "accepted": 9, "rejected": 1, "relabelled": 1}
    # a relabelled item stays relabelled when accepted again; the filter by class sees the edit
    run(site.config, "dataset", "review", "accept", "--ids", a1)
    assert by_stem(site)["a1"]["status"] == "relabelled"
    assert "a1" in {i["stem"] for i in items(site, "--class", "car", "--camera", "cam-a")["items"]}
    assert "a1" not in {
        i["stem"] for i in items(site, "--class", "person", "--camera", "cam-a")["items"]
    }
    day_dir = next((site.cfg.intake_dir / DEV / "cam-a").iterdir())
    assert (day_dir / "a1.txt").read_text() == "1 0.500000 0.500000 0.200000 0.200000\n"
    # a bulk edit that is wrong for one item (a1 has one box left) changes no file at all
    a2 = stems["a2"]["id"]
    bad = {"filter": {"ids": [a1, a2]}, "edit": {"delete": [1]}}
    assert site.gateway.post("/v1/review/relabel", bad).status_code == 400
    assert (day_dir / "a2.txt").read_text() == TWO_BOXES
    # a second edit keeps the teacher's original, and both edits are recorded
    run(site.config, "dataset", "review", "relabel", "--ids", a1, "--box", "0=1")
    sidecar = json.loads((day_dir / "a1.json").read_text())
    assert sidecar["review"]["original_labels"] == TWO_BOXES
    assert len(sidecar["review"]["edits"]) == 2
    assert sidecar["class_names"] == NAMES  # the device's sidecar is kept
    detail = site.gateway.get(f"/v1/review/items/{a1}")
    assert detail["original_labels"] == TWO_BOXES and len(detail["boxes_list"]) == 1
    image = httpx.get(f"{site.gateway.url}/v1/review/items/{a1}/image", headers=ADMIN, timeout=10)
    assert image.content == image_of(2) and image.headers["content-type"] == "image/jpeg"


PATH_TRICKS = [
    "..%2F..%2Fkeys%2Frelease.key",  # encoded separators
    "....",  # dots only
    "0123456789abcdeg",  # not hex
    "0123456789ABCDEF",  # upper case is not an id
    "%2Fetc%2Fpasswd",  # an absolute path
]


def test_path_tricks_on_item_ids_are_refused(site: Site) -> None:
    """An id is 16 lower-case hex digits looked up in the database, never a path."""
    site.gateway.start()
    url = site.gateway.url
    client = GatewayClient(url, ADMIN_TOKEN)
    for item_id in PATH_TRICKS:
        for path in (f"/v1/review/items/{item_id}", f"/v1/review/items/{item_id}/image"):
            resp = httpx.get(url + path, headers=ADMIN, timeout=10)
            assert resp.status_code in (400, 404), (path, resp.status_code)
            assert b"BEGIN" not in resp.content and b"root:" not in resp.content
        body = {"filter": {"ids": [item_id.replace("%2F", "/")]}}
        assert site.gateway.post("/v1/review/accept", body).status_code == 400
        with pytest.raises(GatewayClientError, match="16 hex digits"):
            client.review_item("../" + item_id)
    client.close()


def split_times(out: Path, split: str) -> dict[str, list[float]]:
    """Capture times (s after T0) of the intake images of one split, per camera."""
    times = {stem: (camera, dt) for camera, stem, _, dt in FRAMES}
    per: dict[str, list[float]] = {}
    for image in (out / "images" / split).glob("intake__*"):
        camera, dt = times[image.stem.split("__")[-1]]
        per.setdefault(camera, []).append(dt)
    return per


def check_manifest(out: Path) -> dict[str, Any]:
    """dataset.json lists every file with its real sha256; gate.json's digest is the folder's."""
    manifest = json.loads((out / "dataset.json").read_text())
    on_disk = {
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and p.name != "dataset.json"
    }
    assert set(manifest["files"]) == on_disk
    assert all(file_sha256(out / rel) == sha for rel, sha in manifest["files"].items())
    gate = json.loads((out / "gate" / "gate.json").read_text())
    assert gate["sha256"] == gate_set_sha256(out / "gate") == manifest["gate_sha256"]
    return manifest


def test_build_split_dedup_classes_gate(reviewed: Site, tmp_path: Path) -> None:
    """Accepted and relabelled items plus a base dataset -> Ultralytics layout; duplicates
    dropped, clusters of a camera never split, the gate kept across builds and grown only on
    request, a class map conflict named."""
    site = reviewed
    client = GatewayClient(site.gateway.url, ADMIN_TOKEN)
    client.review_action("accept", {"filter": {"device": DEV}})
    stems = {i["stem"]: i["id"] for i in client.review_items({}, 100)["items"]}
    client.review_action("reject", {"filter": {"ids": [stems["old-1"]]}})
    edit = {"boxes": {"0": "car"}, "delete": [1]}
    cluster = [stems["a0"], stems["a1"], stems["a2"]]
    client.review_action("relabel", {"filter": {"ids": cluster}, "edit": edit})
    client.close()
    base = make_base(tmp_path / "base", ["person", "car", "bike"], n_train=4, n_val=2)
    out = tmp_path / "ds"
    args = ["dataset", "build", "round1", "--from", "intake", "--base", str(base)]
    first = run(site.config, *args, "--out", str(out), "--gap", "10", "--grow-gate", "2")
    assert "built round1 v1" in first.output and "writing:" in first.output  # progress shown
    m1 = check_manifest(out)
    assert m1["classes"] == ["person", "car", "bike"]
    assert m1["dropped"]["exact_duplicate"] == 1 and m1["dropped"]["near_duplicate"] == 1
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["names"] == {0: "person", 1: "car", 2: "bike"} and data["test"] == "gate/images"
    all_images = {p.stem for p in out.glob("images/*/*")} | {
        p.stem for p in out.glob("gate/images/*")
    }
    assert not any("old-1" in s for s in all_images)  # rejected
    assert (out / "labels" / "train").exists() and len(list(out.glob("gate/images/*"))) == 2
    relabelled = [p for p in out.rglob("intake__*.txt") if p.stem[-3:] in ("_a0", "_a1", "_a2")]
    assert relabelled and all(
        p.read_text() == "1 0.500000 0.500000 0.200000 0.200000\n" for p in relabelled
    )
    for camera, val in split_times(out, "val").items():
        train = split_times(out, "train").get(camera, [])
        assert all(abs(t - v) > 10 for t in train for v in val), (camera, train, val)
    gate1 = json.loads((out / "gate" / "gate.json").read_text())
    second = run(site.config, *args, "--out", str(out), "--gap", "10")
    m2 = check_manifest(out)
    assert "v2" in second.output and m2["gate_sha256"] == m1["gate_sha256"]
    gate_keys = {i["source"].replace("/", "__") for i in gate1["items"]}
    assert not gate_keys & {p.stem for p in out.glob("images/*/*")}  # never trained on
    run(site.config, *args, "--out", str(out), "--gap", "10", "--grow-gate", "1")
    gate3 = json.loads((out / "gate" / "gate.json").read_text())
    assert gate3["items"][:2] == gate1["items"] and len(gate3["items"]) == 3
    assert check_manifest(out)["gate_sha256"] != m1["gate_sha256"]
    swapped = make_base(tmp_path / "swapped", ["car", "person"], n_train=1, n_val=1)
    clash = run(
        site.config, "dataset", "build", "x", "--base", str(swapped), "--out", str(out), check=False
    )
    assert clash.exit_code == 1
    assert (
        "class 0 is 'person' in the previous build" in clash.output
        and "'car' in the base" in clash.output
    )
