"""Config validation and `edge-agent check-config`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agent.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]

BASE = {
    "device": {"id": "dev-1"},
    "cameras": [{"id": "cam-1", "source": {"type": "file", "path": "engines/demo/clip.mp4"}}],
    "model": {"path": "engines/demo/model.onnx", "engine": {"type": "onnxruntime"}},
}


def write(tmp_path: Path, data: object) -> Path:
    p = tmp_path / "agent.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def with_(path: list[str | int], value: object) -> dict:
    import copy

    data = copy.deepcopy(BASE)
    node: object = data
    for key in path[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(key, {})
        else:
            node = node[key]  # type: ignore[index]
    node[path[-1]] = value  # type: ignore[index]
    return data


def test_shipped_demo_config_is_valid() -> None:
    """configs/agent.yaml validates."""
    cfg = load_config(REPO / "configs" / "agent.yaml")
    assert cfg.device.id == "demo-device"


@pytest.mark.parametrize(
    "example", sorted((REPO / "configs" / "examples").glob("*.yaml")), ids=lambda p: p.name
)
def test_example_configs_are_valid(example: Path) -> None:
    """Every commented example config validates."""
    load_config(example)


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (["device", "id"], "Dev", "device.id"),  # upper case
        (["device", "id"], "a/b", "device.id"),  # topic separator
        (["device", "id"], "a+", "device.id"),  # wildcard
        (["device", "id"], "#", "device.id"),  # wildcard
        (["device", "id"], "-a", "device.id"),  # leading dash
        (["device", "id"], "a" * 64, "device.id"),  # too long
        (["cameras", 0, "id"], "cam/1", "cameras.0.id"),
        (["device", "colour"], "red", "device.colour"),  # unknown key
        (["model", "engine", "type"], "tflite", "model.engine"),  # unknown engine type
        (
            ["model", "engine", "providers"],
            ["NoSuchProvider"],
            "model.engine.onnxruntime.providers.0",
        ),
        (["cameras", 0, "fps_cap"], 0, "cameras.0.fps_cap"),  # zero fps
        (["cameras", 0, "fps_cap"], -5, "cameras.0.fps_cap"),  # negative fps
        (["cameras", 0, "source", "fps"], -1, "cameras.0.source.file.fps"),
        (["cameras", 0, "source", "type"], "ftp", "cameras.0.source"),  # unknown source type
        (["mqtt", "client_id"], "a#b", "mqtt"),
        (["mqtt", "tls"], {"ca_file": "ca.pem", "cert_file": "c.pem"}, "mqtt.tls"),  # half TLS
    ],
)
def test_invalid_values_are_refused_with_field_path(
    tmp_path: Path, path: list, value: object, expected: str
) -> None:
    """Each invalid value yields a problem naming its field path."""
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, with_(path, value)))
    assert any(p.startswith(expected) for p in exc.value.problems), exc.value.problems


def test_duplicate_camera_ids_are_refused(tmp_path: Path) -> None:
    """Two cameras with one id are refused."""
    data = with_(["cameras"], BASE["cameras"] * 2)
    with pytest.raises(ConfigError, match="unique"):
        load_config(write(tmp_path, data))


def test_check_config_prints_every_problem_and_exits_1(tmp_path: Path) -> None:
    """check-config lists all problems with field paths and exits 1."""
    data = with_(["device", "id"], "BAD/ID")
    data["bogus"] = 1
    data["cameras"][0]["fps_cap"] = -1
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "check-config", str(write(tmp_path, data))],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "3 problem(s)" in proc.stderr
    for field in ("device.id", "bogus", "cameras.0.fps_cap"):
        assert field in proc.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("device: [unclosed", "invalid YAML"),  # syntax error
        ("- just\n- a list\n", "expected a mapping"),  # wrong top-level type
    ],
)
def test_unparsable_files_are_clear_errors(tmp_path: Path, content: str, expected: str) -> None:
    """A file that is not a YAML mapping gets one clear problem."""
    p = tmp_path / "agent.yaml"
    p.write_text(content)
    with pytest.raises(ConfigError, match=expected):
        load_config(p)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    """A missing config file is reported, not a traceback."""
    with pytest.raises(ConfigError, match="cannot read file"):
        load_config(tmp_path / "nope.yaml")


def test_password_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """mqtt.password_env names a variable; a missing variable is a clear error."""
    cfg = load_config(
        write(tmp_path, with_(["mqtt"], {"username": "u", "password_env": "EDGE_PW"}))
    )
    monkeypatch.delenv("EDGE_PW", raising=False)
    with pytest.raises(ValueError, match="EDGE_PW"):
        cfg.mqtt.password()
    monkeypatch.setenv("EDGE_PW", "s3cret")
    assert cfg.mqtt.password() == "s3cret"


def test_publisher_config_loads_no_engine() -> None:
    """Importing the publisher (and its MQTT/TLS config) loads no engine, ORT or OpenCV."""
    code = (
        "import sys, agent.publish.publisher, agent.publish.config; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('onnxruntime', 'cv2', "
        "'tensorrt', 'torch') or m.startswith('agent.engines') or m == 'agent.config'); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stdout + run.stderr
