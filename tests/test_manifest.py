"""The manifest's compat block: its spelling and the check a device makes before a download."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agent.contracts.manifest import Compat, compat_problems, gpu_arch_of


@pytest.mark.parametrize(
    ("compat", "trt", "cc", "problems"),
    [
        (Compat(), None, None, 0),  # no needs: runs anywhere an engine runs
        (Compat(min_tensorrt="10.3"), "10.3.0.30", "8.7", 0),  # equal up to its length
        (Compat(min_tensorrt="10.3.1"), "10.3", "8.7", 1),  # 10.3 is 10.3.0 < 10.3.1
        (Compat(min_tensorrt="10.10"), "10.9.0", "8.7", 1),  # numeric, not string, order
        (Compat(min_tensorrt="8.6"), "10.3.0", "8.7", 1),  # another major: never loads
        (Compat(min_tensorrt="10.3"), "11.0.0", "8.7", 1),
        (Compat(gpu_arch="sm_87"), "10.3.0", "8.7", 0),
        (Compat(gpu_arch="sm_90a"), "10.3.0", "9.0", 0),  # arch-specific suffix, same GPU
        (Compat(gpu_arch="sm_72"), "10.3.0", "8.7", 1),
        (Compat(min_tensorrt="10.3", gpu_arch="sm_87"), None, None, 2),  # unknown is no pass
        (Compat(min_tensorrt="11", gpu_arch="sm_72"), "10.3.0", "8.7", 2),
    ],
)
def test_compat_problems(compat: Compat, trt: str | None, cc: str | None, problems: int) -> None:
    """Each unmet (or uncheckable) need is one problem, with both sides named."""
    found = compat_problems(compat, tensorrt_version=trt, compute_capability=cc)
    assert len(found) == problems, found
    needs = [n for n in (compat.min_tensorrt, compat.gpu_arch) if n is not None]
    for text in found:
        assert any(n in text for n in needs), text


def test_gpu_arch_spelling() -> None:
    assert gpu_arch_of("8.7") == "sm_87"
    assert gpu_arch_of("10.0") == "sm_100"


@pytest.mark.parametrize(
    "bad",
    [{"min_tensorrt": "ten"}, {"min_tensorrt": "10.3 "}, {"gpu_arch": "8.7"}, {"gpu_arch": "sm87"}],
)
def test_compat_refuses_misspelt_needs(bad: dict[str, str]) -> None:
    """A need the device could not compare is refused when the manifest is made."""
    with pytest.raises(ValidationError):
        Compat(**bad)
