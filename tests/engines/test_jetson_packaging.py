"""What `pip install '.[jetson]'` asks for on a Jetson: no pip OpenCV, no numpy 2.

Evaluated from pyproject.toml's requirements and markers for a JetPack 6 environment
(aarch64, Linux, Python 3.10) with `packaging`, not by a network resolution: the suite
stays offline and fast. The report records a real `pip install --dry-run --platform
manylinux2014_aarch64 --python-version 3.10` of the same set.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
PROJECT = tomllib.loads(PYPROJECT.read_text())["project"]

JETSON = {  # JetPack 6 (L4T r36, Ubuntu 22.04) on an Orin
    "platform_machine": "aarch64",
    "platform_system": "Linux",
    "sys_platform": "linux",
    "os_name": "posix",
    "python_version": "3.10",
    "python_full_version": "3.10.12",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
PC = {**JETSON, "platform_machine": "x86_64"}


def requested(extras: list[str], env: dict[str, str]) -> dict[str, Requirement]:
    """Requirements pip would act on for `pip install '.[extras]'` in `env`, by name."""
    reqs = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in PROJECT["optional-dependencies"][extra]]
    chosen: dict[str, Requirement] = {}
    for req in reqs:
        if req.marker is None or req.marker.evaluate({**env, "extra": ""}):
            chosen[req.name.lower()] = req
    return chosen


def test_jetson_install_keeps_system_opencv() -> None:
    """No pip OpenCV on a Jetson: Ubuntu's GStreamer-enabled cv2 stays the one imported."""
    names = requested(["jetson"], JETSON)
    assert not [n for n in names if n.startswith("opencv")], sorted(names)


def test_jetson_install_keeps_jetpack_numpy() -> None:
    """numpy on a Jetson is satisfied by JetPack's 1.21 (or 1.26) and never upgraded to 2."""
    spec = requested(["jetson"], JETSON)["numpy"].specifier
    assert spec.contains(Version("1.21.5")) and spec.contains(Version("1.26.4"))
    assert not spec.contains(Version("2.0.0"))


@pytest.mark.parametrize("extras", [["jetson"], ["gpu"], ["jetson", "gpu"]])
def test_jetson_install_asks_pypi_for_nothing_it_lacks(extras: list[str]) -> None:
    """No onnxruntime-gpu (no aarch64 PyPI wheel) nor PyPI tensorrt (JetPack has it) on Jetson."""
    names = requested(extras, JETSON)
    assert "onnxruntime-gpu" not in names and "tensorrt" not in names
    if "jetson" in extras:
        assert {"pycuda", "cuda-python", "onnx"} <= set(names)


def test_pc_install_still_gets_opencv_and_numpy() -> None:
    """scripts/test.sh's install on a PC still brings pip OpenCV and numpy >= 1.24."""
    names = requested(["cpu", "dev", "florence", "teacher", "gateway"], PC)
    assert "opencv-python-headless" in names
    assert not names["numpy"].specifier.contains(Version("1.23.0"))
