"""The gateway's web page in a real browser (Debian's chromium, headless, driven by Playwright)
against a real `edge-gateway serve`, a real Mosquitto and simulated devices.

Each action is checked against the gateway's state (SQLite, the JSON API), not only the page.
Screenshots go to the test's directory, and to $WEBUI_SCREENSHOTS when set (docs/img: the ones
docs/gateway.md shows).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import paho.mqtt.publish as mqtt_publish
import pytest
import yaml

from tests.gateway.conftest import ADMIN_TOKEN, Site, wait_for
from tests.gateway.intake_items import T0, jpeg, upload
from tests.gateway.review_cli import run
from tests.helpers.broker import Mosquitto

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
FAST = ["web-a", "web-b"]  # commit after a short probation
SLOW = "web-c"  # long probation: a rollout to abort while it runs


def lan_address() -> str | None:
    """A non-loopback address of this machine (the site LAN), if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent for UDP connect
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith("127.") else addr


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, site_template: Path) -> Iterator[Site]:
    """One site for the module: gateway on every address (admin API loopback-only), three
    devices on v1."""
    tmp = tmp_path_factory.mktemp("web")
    with Mosquitto(tmp / "broker") as broker:
        s = Site(tmp, broker, site_template)
        lan = lan_address()
        data = yaml.safe_load(s.config.read_text())
        data["http"].update(
            host="0.0.0.0",
            admin_loopback_only=True,
            allowed_hosts=["127.0.0.1", "localhost"] + ([lan] if lan else []),
        )
        data["archive"] = {"enabled": True}  # the Live page shares its detection subscription
        data["offline_after_s"] = 3600  # simulated devices send no health: never "stale" here
        s.config.write_text(yaml.safe_dump(data))
        s.lan = lan  # type: ignore[attr-defined]
        try:
            s.sims.start(FAST, s.model_arg(1))
            s.sims.start([SLOW], s.model_arg(1), "--probation", "60")
            s.gateway.start()
            s.wait_devices([*FAST, SLOW])
            yield s
        finally:
            s.sims.stop_all()
            s.gateway.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail("chromium is missing: apt-get install chromium (scripts/test.sh does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser, site: Site):  # noqa: ANN001, ANN201 - playwright objects
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    context.close()


def shot(pg, site: Site, name: str) -> None:  # noqa: ANN001
    path = site.tmp / f"{name}.png"
    pg.screenshot(path=str(path), full_page=False)
    target = os.environ.get("WEBUI_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / f"web-{name}.png")


def db(site: Site, sql: str, args: tuple = ()) -> list[tuple]:
    with sqlite3.connect(site.cfg.db_path) as conn:
        return conn.execute(sql, args).fetchall()


def login(pg, site: Site, token: str = ADMIN_TOKEN, base: str | None = None) -> None:  # noqa: ANN001
    pg.goto(f"{base or site.gateway.url}/fleet")
    assert "/login" in pg.url  # no session: every page sends to the login
    pg.get_by_label("Admin token").fill(token)
    pg.get_by_role("button", name="Log in").click()


def deploy_form(pg, site: Site, version: int, devices: list[str], **fields: str) -> None:  # noqa: ANN001
    pg.goto(f"{site.gateway.url}/rollouts/new")
    pg.get_by_label("Model version").select_option(f"demo-yolov8n@{version}")
    for d in devices:
        pg.locator(f"#dev-{d}").check()
    for name, value in fields.items():
        pg.locator(f"#{name}").fill(value)
    pg.get_by_role("button", name="Start rollout").click()


def test_login_fleet_and_lan(page, site: Site) -> None:  # noqa: ANN001
    """Wrong token refused; the session cookie is HttpOnly + SameSite=Strict; the fleet shows
    every device online; from the LAN address the page works though the JSON API is
    loopback-only; logging out ends the session."""
    forged = page.context.request.post(  # another site's page posting the login form
        f"{site.gateway.url}/login",
        form={"token": ADMIN_TOKEN},
        headers={"Origin": "http://evil.example"},
        max_redirects=0,
    )
    assert forged.status == 403 and not page.context.cookies()
    login(page, site, token="wrong")
    assert "wrong admin token" in page.locator("[role=alert]").inner_text()
    shot(page, site, "login")
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/fleet")
    cookie = next(c for c in page.context.cookies() if c["name"] == "edge_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    for d in [*FAST, SLOW]:
        row = page.locator(f"tr[data-device={d}]")
        assert "online" in row.inner_text() and "demo-yolov8n@1" in row.inner_text()
    shot(page, site, "fleet")
    page.get_by_label("Search").fill("web-c")
    page.get_by_role("button", name="Apply").click()
    assert page.locator("tbody tr").count() == 1
    page.set_viewport_size({"width": 390, "height": 800})  # a phone: nothing wider than it
    page.goto(f"{site.gateway.url}/fleet")
    assert page.evaluate("document.documentElement.scrollWidth") <= 391
    shot(page, site, "fleet-phone")
    page.get_by_role("button", name="Log out").click()
    page.goto(f"{site.gateway.url}/models")
    assert "/login" in page.url

    lan = getattr(site, "lan", None)
    if lan:
        base = f"http://{lan}:{site.cfg.http.port}"
        api = httpx.get(f"{base}/v1/devices", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert api.status_code == 403  # admin_loopback_only guards the JSON API ...
        login(page, site, base=base)  # ... the token guards the page
        page.wait_for_url(f"{base}/fleet")
        assert page.locator(f"tr[data-device={SLOW}]").count() == 1


def test_deploy_abort_rollback(page, site: Site) -> None:  # noqa: ANN001
    """Start a rollout from the form and watch it finish live; abort one with confirmation;
    roll the first back; a deploy below the floor and a POST without CSRF are refused."""
    login(page, site)
    deploy_form(page, site, 2, FAST, canary="1", wave_size="1", timeout_s="30")
    page.wait_for_url("**/rollouts/*")
    rid = int(page.url.rsplit("/", 1)[1])
    page.locator(".status", has_text="succeeded").wait_for()  # live: no manual reload
    assert db(site, "SELECT state, action FROM rollouts WHERE id=?", (rid,)) == [
        ("succeeded", "deploy")
    ]
    assert page.locator("tr[data-state=committed]").count() == 2
    shot(page, site, "rollout")

    deploy_form(page, site, 2, [SLOW], timeout_s="120")
    page.wait_for_url("**/rollouts/*")
    slow = int(page.url.rsplit("/", 1)[1])
    page.get_by_text("probation ends").wait_for()  # the device says when probation ends
    page.get_by_role("link", name=f"Abort rollout {slow}…").click()
    shot(page, site, "abort-confirm")
    page.get_by_role("button", name=f"Yes, abort rollout {slow}").click()
    page.wait_for_url(f"**/rollouts/{slow}")
    state, reason = db(site, "SELECT state, reason FROM rollouts WHERE id=?", (slow,))[0]
    assert state in ("rolling_back", "aborted") and reason == "aborted from the web page"

    page.goto(f"{site.gateway.url}/rollouts/{rid}")
    page.get_by_role("link", name=f"Roll back rollout {rid}…").click()
    assert "web-a: back to demo-yolov8n@1" in page.content()
    page.get_by_role("button", name=f"Yes, roll back rollout {rid}").click()
    page.locator(".status", has_text="succeeded").wait_for()
    back = int(page.url.rsplit("/", 1)[1])
    assert db(site, "SELECT action, undoes, state FROM rollouts WHERE id=?", (back,)) == [
        ("rollback", rid, "succeeded")
    ]
    running = {d["device"]: d["model"] for d in site.gateway.get("/v1/devices")}
    assert running["web-a"] == running["web-b"] == "demo-yolov8n@1"

    count = db(site, "SELECT COUNT(*) FROM rollouts")[0][0]
    deploy_form(page, site, 2, ["web-a"])
    assert "is not above" in page.locator("[role=alert]").inner_text()
    shot(page, site, "deploy-refused")
    forged = page.context.request.post(
        f"{site.gateway.url}/rollouts",
        form={"model": "demo-yolov8n@3", "devices": "web-a"},
        max_redirects=0,
    )
    assert forged.status == 403
    assert db(site, "SELECT COUNT(*) FROM rollouts")[0][0] == count


def publish_live_extras(site: Site) -> bytes:
    """What a device with events and snapshots on retains for its camera `door`: a snapshot,
    a zone count and a line count. Returns the snapshot's JPEG."""
    snapshot = jpeg(7, (320, 180))
    base = "edge/web-a/cameras/door"
    extras = [
        (f"{base}/snapshot/person", snapshot),
        (f"{base}/zones/yard/person", b"2"),
        (f"{base}/lines/gate/person", b'{"in": 3, "out": 1, "since": "2026-11-29T06:00:00.000Z"}'),
    ]
    for topic, payload in extras:
        mqtt_publish.single(topic, payload, qos=1, retain=True, port=site.broker.port)
    return snapshot


def test_models_and_live(page, site: Site) -> None:  # noqa: ANN001
    """The registry with signer and devices; a detection drawn with Pillow on the Live page,
    beside the device's retained snapshot and its zone and line counts."""
    detection = {
        "schema": "edge.detections/1",
        "device": "web-a",
        "camera": "door",
        "ts": "2026-11-29T07:00:00.000Z",
        "frame": {"width": 640, "height": 360},
        "model": {"name": "demo-yolov8n", "version": 1, "sha256": "0" * 64},
        "detections": [
            {"label": "person", "class_id": 0, "confidence": 0.91, "box": [100, 60, 220, 330]}
        ],
    }
    mqtt_publish.single(
        "edge/web-a/cameras/door/detections",
        json.dumps(detection),
        qos=1,
        port=site.broker.port,
    )
    snapshot = publish_live_extras(site)
    login(page, site)
    page.goto(f"{site.gateway.url}/models")
    row = page.locator("tr[data-model='demo-yolov8n@1']")
    signed = db(site, "SELECT signed FROM models WHERE name='demo-yolov8n' AND version=1")
    key_id = json.loads(signed[0][0])["key_id"]
    assert "onnx" in row.inner_text() and key_id in row.inner_text()
    assert any(d in row.inner_text() for d in [*FAST, SLOW])
    shot(page, site, "models")

    def shown() -> bool:
        page.goto(f"{site.gateway.url}/live")
        card = page.locator("section.card")
        return card.count() == 1 and card.locator("img.snapshot").count() == 1

    wait_for(shown, 20, what="the camera and its snapshot on the Live page")
    img = page.locator("section.card img").first
    assert "person" in (img.get_attribute("alt") or "")
    counts = page.locator("ul.counts").inner_text()
    assert "zone yard person: 2" in counts
    assert "line gate person: in 3, out 1" in counts
    for selector in ("section.card img", "section.card img.snapshot"):
        width = f"document.querySelector('{selector}').naturalWidth"
        wait_for(lambda w=width: page.evaluate(w) > 0)
    shot(page, site, "live")
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    png = httpx.get(f"{site.gateway.url}/live/web-a/door.png", cookies=cookies, timeout=10).content
    assert png.startswith(b"\x89PNG")
    got = httpx.get(f"{site.gateway.url}/live/web-a/door/snapshot.jpg", cookies=cookies, timeout=10)
    assert got.headers["content-type"] == "image/jpeg" and got.content == snapshot


def test_review_with_the_keyboard(page, site: Site) -> None:  # noqa: ANN001
    """Three uploaded hard frames: a accepts, r rejects, a digit changes a box's class; each
    decision is what `edge-gateway dataset review list` reports."""
    names = ["person", "car", "dog"]
    for i, stem in enumerate(("f-000", "f-001", "f-002")):
        resp = upload(
            site.gateway.url,
            "web-b",
            "yard",
            stem,
            jpeg(40 + i),
            "0 0.5 0.5 0.4 0.6\n",
            T0 + i,
            names,
        )
        assert resp.status_code == 201, resp.text
    login(page, site)
    page.goto(f"{site.gateway.url}/review")
    cards = page.locator("article.rcard")
    assert cards.count() == 3 and page.locator("[data-count=pending]").inner_text() == "3"
    wait_for(lambda: page.evaluate("document.querySelector('article.rcard img').naturalWidth") > 0)
    shot(page, site, "review")
    page.keyboard.press("a")
    cards.nth(0).locator("[data-status]", has_text="accepted").wait_for()
    page.keyboard.press("r")
    cards.nth(1).locator("[data-status]", has_text="rejected").wait_for()
    page.keyboard.press("k")
    page.keyboard.press("j")
    page.keyboard.press("j")  # the third frame
    page.keyboard.press("1")
    cards.nth(2).locator("[data-status]", has_text="relabelled").wait_for()
    assert cards.nth(2).locator("[data-box='0']").inner_text() == "car"

    listing = json.loads(run(site.config, "dataset", "review", "list", "--json").output)
    status = {i["stem"]: i["status"] for i in listing["items"]}
    assert status == {"f-000": "accepted", "f-001": "rejected", "f-002": "relabelled"}
    labels = (site.cfg.intake_dir / "web-b" / "yard").glob("*/f-002.txt")
    assert [p.read_text().split()[0] for p in labels] == ["1"]
