"""The config-push contract: secrets never travel, ids are checked, parsing refuses junk."""

from __future__ import annotations

from typing import Any

import pytest

from agent.contracts.config_command import parse_config_command, secret_problems
from agent.contracts.ota import OtaRejectedError, Reason


def rtsp(url: str, **extra: Any) -> dict[str, Any]:
    return {"id": "door", "source": {"type": "rtsp", "url": url, **extra}}


@pytest.mark.parametrize(
    ("cameras", "found"),
    [
        # the placeholder, filled in by the device from its environment
        ([rtsp("rtsp://admin:{password}@10.0.0.9/s", password_env="CAM_PW")], False),
        # no credentials at all
        ([rtsp("rtsp://10.0.0.9/s")], False),
        # a user name alone is no secret
        ([rtsp("rtsp://admin@10.0.0.9/s")], False),
        # a literal password in the URL
        ([rtsp("rtsp://admin:hunter2@10.0.0.9/s")], True),
        # a password in a GStreamer pipeline's location
        ([{"id": "c", "source": {"pipeline": "rtspsrc location=rtsp://u:p@h/s ! appsink"}}], True),
        # a secret under a key of its own, however deep
        ([{"id": "c", "source": {"type": "file", "path": "x"}, "extra": {"password": "x"}}], True),
    ],
)
def test_secret_problems(cameras: list[Any], found: bool) -> None:
    """Literal secrets are found wherever they sit; placeholders and user names pass."""
    assert bool(secret_problems(cameras)) is found


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", Reason.MALFORMED),  # not JSON
        (b"[1, 2]", Reason.MALFORMED),  # not an object
        (b'{"command_id": "x"}', Reason.MALFORMED),  # fields missing
        (b"{" + b" " * 70000 + b"}", Reason.PAYLOAD_TOO_LARGE),  # over the size limit
    ],
)
def test_parse_refuses_junk(payload: bytes, reason: Reason) -> None:
    """An unparseable push is refused with a reason before any signature work."""
    with pytest.raises(OtaRejectedError) as err:
        parse_config_command(payload)
    assert err.value.reason is reason
