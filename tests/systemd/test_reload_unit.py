"""The agent unit's reload: `systemctl reload edge-agent` sends SIGHUP to the daemon."""

from __future__ import annotations

from tests.systemd.test_units import AGENT


def test_agent_unit_reloads_with_sighup() -> None:
    """ExecReload sends SIGHUP to the main process (the daemon re-reads its config)."""
    assert AGENT["Service"].get("ExecReload") == ["/bin/kill -HUP $MAINPID"]
