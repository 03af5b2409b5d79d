"""The model check: ONNX external data is found wherever it hides (real ONNX files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.trust.model_check import (
    ExternalDataError,
    NotOnnxError,
    check_onnx_file,
    location_escapes,
)
from tests.helpers.external_data import external_data_in_subgraph, external_data_model


@pytest.mark.parametrize(
    ("location", "escapes"),
    [
        ("weights.bin", False),  # beside the model
        ("data/weights.bin", False),  # below the model's directory
        ("../../etc/passwd", True),  # climbs out
        ("data/../../x", True),  # climbs out through a subdirectory
        ("/etc/passwd", True),  # absolute POSIX path
        ("C:\\Windows\\win.ini", True),  # Windows drive
        ("..\\..\\secret", True),  # Windows separators
        ("\\\\server\\share\\x", True),  # UNC path
    ],
)
def test_location_escapes(location: str, escapes: bool) -> None:
    """A `location` leaves the model directory when absolute, on a drive or climbing with '..'."""
    assert location_escapes(location) is escapes


def test_escaping_initializer_is_refused(tmp_path: Path) -> None:
    """An initializer reading ../../etc/passwd is refused, and the problem names it."""
    with pytest.raises(ExternalDataError, match=r"initializer\[weights\].*escapes"):
        check_onnx_file(external_data_model(tmp_path / "m.onnx"))


def test_external_data_inside_the_directory_is_refused_too(tmp_path: Path) -> None:
    """An artifact is one file: external data beside the model is refused as well."""
    (tmp_path / "weights.bin").write_bytes(b"\0" * 240)
    with pytest.raises(ExternalDataError, match="self-contained"):
        check_onnx_file(external_data_model(tmp_path / "m.onnx", location="weights.bin"))


def test_external_data_hidden_in_a_subgraph_is_found(tmp_path: Path) -> None:
    """A tensor in an If branch with an absolute location is refused."""
    with pytest.raises(ExternalDataError, match="then_branch.*'/etc/shadow'"):
        check_onnx_file(external_data_in_subgraph(tmp_path / "m.onnx"))


def test_demo_model_passes(demo_model: Path) -> None:
    """The bundled demo model keeps all its weights inside the file."""
    check_onnx_file(demo_model)


def test_not_onnx_is_refused(tmp_path: Path) -> None:
    """Random bytes are not an ONNX model."""
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x08\xff\xff\xff" * 64)
    with pytest.raises(NotOnnxError):
        check_onnx_file(path)
