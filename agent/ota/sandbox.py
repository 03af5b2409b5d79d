"""Load and try a candidate model in a memory-limited child process before the daemon does.

A signed model is still untrusted input: a graph that allocates gigabytes at warm-up or on the
first frame would take the daemon down with it (on a Jetson, the kernel's OOM killer picks the
daemon). So the OTA job first runs `python -m agent.ota.sandbox` with the candidate, the
daemon's engine config and the recent frames; only when that child loads, warms up and passes
the same trial (`agent.ota.trial`) does the daemon load the model itself.

The limit (`ota.candidate_memory_mb`) is applied in one of two ways (`ota.candidate_limit`):

* `rlimit` (the default on ONNX Runtime / CPU): the child sets RLIMIT_AS on itself before it
  imports anything heavy; an allocation past it fails and the child reports the error.
* `cgroup` (the default on TensorRT): CUDA reserves a huge virtual address space and fails to
  start under RLIMIT_AS, so the child runs in a transient systemd scope with `MemoryMax=`
  (`systemd-run --scope`); the kernel kills the child, not the daemon, at the limit. The
  service user needs the right to create scopes (docs/ota.md, "Memory-limited trial").

Any failure - an error, a kill, a timeout, a limit that cannot be applied - is
`validation_failed` with the child's last words; the running model is never touched.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import structlog

from agent.contracts.manifest import Manifest
from agent.contracts.ota import OtaRejectedError, Reason
from agent.engines.registry import EngineConfig
from agent.util.models import FrozenModel

log = structlog.get_logger(__name__)

MIB = 1 << 20
FRAMES = "frames.npz"
REQUEST = "request.json"


class CandidateSpec(FrozenModel):
    """How the daemon loads models: what the child needs to load the candidate the same way."""

    engine: EngineConfig
    """The daemon's engine config."""
    conf_threshold: float
    """Score threshold."""
    iou_threshold: float
    """NMS IoU threshold."""
    max_detections: int
    """Most boxes kept per frame."""


class TrialRequest(FrozenModel):
    """One trial, written as JSON for the child."""

    model_path: str
    """Installed candidate artifact."""
    manifest: Manifest | None
    """Its manifest."""
    spec: CandidateSpec
    """Engine config and thresholds."""
    latency_budget_ms: float
    """Per-frame latency budget."""


def limit_mode(spec: CandidateSpec, configured: str) -> str:
    """`rlimit` or `cgroup`: `auto` picks cgroup for TensorRT (CUDA), rlimit otherwise."""
    if configured != "auto":
        return configured
    return "cgroup" if spec.engine.type == "tensorrt" else "rlimit"


def child_command(mode: str, memory_mb: int, workdir: Path) -> list[str]:
    """The child's command line for a limit mode (pure)."""
    child = [sys.executable, "-m", "agent.ota.sandbox", str(workdir)]
    if mode == "rlimit":
        return [*child, str(memory_mb)]
    if mode == "cgroup":
        scope = ["systemd-run", "--scope", "--quiet", "--collect"]
        props = ["-p", f"MemoryMax={memory_mb}M", "-p", "MemorySwapMax=0"]
        return [*scope, *props, "--", *child, "0"]
    raise ValueError(f"unknown memory limit mode {mode!r}")


def run_trial(
    request: TrialRequest,
    images: list[np.ndarray],
    *,
    mode: str,
    memory_mb: int,
    timeout_s: float,
    workdir: Path,
) -> None:
    """Run the trial in a child under the memory limit; raise validation_failed on any failure."""
    with tempfile.TemporaryDirectory(dir=workdir, prefix="trial-") as tmp:
        d = Path(tmp)
        (d / REQUEST).write_text(request.model_dump_json(by_alias=True))
        np.savez(d / FRAMES, *images)
        cmd = child_command(mode, memory_mb, d)
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise _failed(f"no answer within {timeout_s:g} s", mode, memory_mb) from None
        except OSError as err:
            raise _failed(f"cannot start it: {err}", mode, memory_mb) from None
    answer = _answer(proc)
    if answer.get("ok") is not True or proc.returncode != 0:
        reason = Reason.LOAD_FAILED if answer.get("stage") == "load" else Reason.VALIDATION_FAILED
        raise _failed(_what_failed(proc, answer), mode, memory_mb, reason)
    log.info(
        "candidate passed its memory-limited trial",
        mode=mode,
        memory_mb=memory_mb,
        vm_peak_mb=answer.get("vm_peak_mb"),
    )


def _answer(proc: subprocess.CompletedProcess[bytes]) -> dict[str, object]:
    """The child's JSON answer (its last stdout line), {} when there is none."""
    lines = proc.stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _what_failed(proc: subprocess.CompletedProcess[bytes], answer: dict[str, object]) -> str:
    """What went wrong, in one line: the child's error, its signal, or its last stderr line."""
    if isinstance(answer.get("error"), str):
        return str(answer["error"])
    if proc.returncode < 0:
        return f"killed by signal {-proc.returncode} (memory limit?)"
    tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
    return f"exit status {proc.returncode}: {tail[0][:500]}"


def _failed(
    what: str, mode: str, memory_mb: int, reason: Reason = Reason.VALIDATION_FAILED
) -> OtaRejectedError:
    return OtaRejectedError(
        reason, f"memory-limited trial ({mode}, {memory_mb} MiB) failed: {what}"
    )


# -- the child ------------------------------------------------------------------------------
def _child(workdir: Path) -> tuple[str, str] | None:
    """Load the candidate (no warm-up), then warm it up and try it on the frames; None on
    success, else (stage, error) with stage `load` or `trial`."""
    from agent.engines.detector import load_detector
    from agent.ota.trial import blank_frame, trial

    request = TrialRequest.model_validate_json((workdir / REQUEST).read_text())
    with np.load(workdir / FRAMES) as npz:
        images = [npz[k] for k in npz.files]
    spec = request.spec
    try:
        detector = load_detector(
            Path(request.model_path),
            spec.engine.model_copy(update={"warmup_runs": 0}),
            conf_threshold=spec.conf_threshold,
            iou_threshold=spec.iou_threshold,
            max_detections=spec.max_detections,
            manifest=request.manifest,
        )
    except Exception as err:  # not a loadable model: the daemon would fail the same way
        return "load", f"{type(err).__name__}: {str(err)[:500]}"
    with detector:
        try:  # the warm-up (a blank frame) is part of the trial: that is where memory goes
            trial(detector, [blank_frame(detector), *images], request.latency_budget_ms)
        except OtaRejectedError as err:
            return "trial", err.detail
        except Exception as err:  # e.g. an allocation refused by the limit
            return "trial", f"{type(err).__name__}: {str(err)[:500]}"
    return None


def main(argv: list[str]) -> int:
    """`python -m agent.ota.sandbox WORKDIR MEMORY_MB` (0: no RLIMIT_AS). Prints one JSON line."""
    workdir, memory_mb = Path(argv[0]), int(argv[1])
    if memory_mb > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb * MIB, memory_mb * MIB))
    try:
        failure = _child(workdir)
    except MemoryError:
        failure = ("trial", "MemoryError")
    stage, error = failure if failure is not None else (None, None)
    answer = {"ok": failure is None, "stage": stage, "error": error, "vm_peak_mb": _vm_peak_mb()}
    print(json.dumps(answer), flush=True)
    return 0 if failure is None else 3


def _vm_peak_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmPeak:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main(sys.argv[1:]))
