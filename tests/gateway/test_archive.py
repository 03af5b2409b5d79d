"""The detection archive and gateway acks, end to end: a real Mosquitto, `edge-gateway serve` with
`archive.enabled`, and a real `edge-agent run` with `outbox.require_gateway_ack`.

The gateway is killed with -9 for a while: the broker PUBACKs what the device publishes
meanwhile and hands it to nobody. In PUBACK mode those messages would be gone; here the device
keeps them (no gateway ack), replays them after `gateway_ack_timeout_s`, and the archive ends
with every seq of the stream.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import yaml

from tests.gateway.conftest import Site, wait_for
from tests.helpers.daemon import DaemonProcess, demo_config

pytestmark = pytest.mark.slow

DEV = "jet-arch"


def archived_seqs(site: Site) -> dict[str, list[int]]:
    """boot_id -> sorted yolo seqs stored in the gateway's archive."""
    path = site.cfg.archive_path
    if not path.exists():
        return {}
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT boot_id, seq FROM detections WHERE device = ? AND stream = 'detections'",
            (DEV,),
        ).fetchall()
    out: dict[str, list[int]] = {}
    for boot, seq in rows:
        out.setdefault(boot, []).append(seq)
    return {b: sorted(s) for b, s in out.items()}


def outbox_rows(state_dir: Path) -> int:
    with sqlite3.connect(state_dir / "outbox.sqlite3") as db:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


def test_gateway_down_then_back_archive_gets_every_seq_and_outbox_drains(
    site: Site, tmp_path: Path
) -> None:
    cfg = yaml.safe_load(site.config.read_text())
    cfg["archive"] = {"enabled": True, "flush_interval_s": 0.1}
    site.config.write_text(yaml.safe_dump(cfg))
    state = tmp_path / "state-dev"
    agent_cfg = demo_config(
        state,
        site.broker.port,
        device=DEV,
        outbox={"require_gateway_ack": True, "gateway_ack_timeout_s": 2.0},
        trust={"gateway_keys": json.loads(site.keys_file.read_text())["gateway_keys"]},
    )
    agent_cfg["cameras"][0]["fps_cap"] = 6.0
    site.gateway.start()
    site.gateway.enroll([DEV])
    with DaemonProcess(tmp_path / "d", agent_cfg) as d:
        wait_for(lambda: sum(map(len, archived_seqs(site).values())) >= 10, 60, what="archived")
        wait_for(lambda: outbox_rows(state) < 10, 30, what="acks draining the outbox")

        site.gateway.kill(signal.SIGKILL)
        before = max(max(s) for s in archived_seqs(site).values())
        time.sleep(4.0)  # ~20 messages PUBACKed by the broker and delivered to nobody
        held = outbox_rows(state)
        assert held >= 10, f"the device deleted unacked messages: {held} rows left"

        site.gateway.start()

        def complete() -> bool:
            seqs = archived_seqs(site)
            if len(seqs) != 1:
                return False
            s = next(iter(seqs.values()))
            return s[-1] >= before + 30 and s == list(range(s[-1] + 1))

        wait_for(
            complete,
            90,
            what="every seq archived, without a hole",
            explain=lambda: f"{archived_seqs(site)}\n{d.log()[-3000:]}",
        )
        wait_for(lambda: outbox_rows(state) < 10, 30, what="outbox drained after the replay")
        health = site.gateway.get("/v1/health")
    stats = health["archive"]
    assert stats["stored"] >= 30 and stats["malformed"] == 0 and stats["gaps_skipped"] == 0
    assert stats["acks_sent"] >= 1
