"""Config of the Florence-2 hard-frame fallback.

Pure pydantic: nothing here reads the model directory or touches the network. Secrets are
never in YAML: `upload.token_env` names the environment variable holding the bearer token.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from agent.contracts.ids import SafeId
from agent.util.models import FrozenModel
from agent.util.validation import check_min_max
from agent.yamlconfig import secret_from_env

Task = Literal[
    "<OD>",
    "<CAPTION_TO_PHRASE_GROUNDING>",
    "<OCR_WITH_REGION>",
    "<DENSE_REGION_CAPTION>",
    "<CAPTION>",
    "<DETAILED_CAPTION>",
    "<MORE_DETAILED_CAPTION>",
    "<OCR>",
    "<REGION_PROPOSAL>",
    "<OPEN_VOCABULARY_DETECTION>",
    "<REFERRING_EXPRESSION_SEGMENTATION>",
    "<REGION_TO_SEGMENTATION>",
    "<REGION_TO_CATEGORY>",
    "<REGION_TO_DESCRIPTION>",
    "<REGION_TO_OCR>",
]
"""The Florence-2 tasks the fallback and the label teacher run (all of transformers' table).

Tasks with a phrase (grounding, open-vocabulary detection, referring segmentation) get the
YOLO class names; region tasks (`<REGION_TO_...>`) get the box of the hard frame's least
confident YOLO detection as location tokens."""

TASKS: tuple[str, ...] = typing.get_args(Task)

RuntimeKind = Literal["torch-fp32", "torch-int8", "torch-fp16-cuda", "onnx-int8", "onnx-fp32"]
"""How Florence-2 runs: torch (fp32, int8 dynamic on CPU, fp16 on CUDA) or ONNX Runtime."""


class EmptyRule(FrozenModel):
    """A camera that should see objects but has seen none for a while is hard (sampled)."""

    after_s: float = Field(gt=0)
    """Seconds without any detection before empty frames count as hard."""
    sample_every_s: float = Field(30.0, gt=0)
    """While empty, escalate at most one frame per this many seconds."""


class CameraPolicy(FrozenModel):
    """When a frame of one camera is hard."""

    band_lo: float = Field(0.25, ge=0, le=1)
    """A detection with confidence in [band_lo, band_hi) is uncertain."""
    band_hi: float = Field(0.5, ge=0, le=1)
    """Upper edge (exclusive) of the band."""
    min_uncertain: int = Field(1, ge=1)
    """The frame is hard when at least this many detections are uncertain."""
    empty: EmptyRule | None = None
    """Optional 'should see objects' rule; off when absent."""

    @model_validator(mode="after")
    def _band(self) -> CameraPolicy:
        if self.band_hi <= self.band_lo:
            raise ValueError(f"band_hi ({self.band_hi}) must be > band_lo ({self.band_lo})")
        return self


class RateLimit(FrozenModel):
    per_minute: float = Field(6.0, gt=0)
    """Escalations per minute (token refill rate)."""
    burst: int = Field(2, ge=1)
    """Most escalations allowed back to back (bucket size)."""


class CaptureConfig(FrozenModel):
    enabled: bool = True
    """Save each escalated frame with its labels."""
    dir: Path | None = None
    """Capture root; defaults to <device.state_dir>/captures."""
    quota_bytes: int = Field(2 * 1024**3, ge=1024 * 1024)
    """Disk quota of the capture root; oldest dropped."""
    jpeg_quality: int = Field(92, ge=10, le=100)
    """JPEG quality of saved frames."""


class UploadConfig(FrozenModel):
    url: str
    """Gateway base URL, e.g. http://gateway:8080; frames go to POST
    {url}/v1/intake/{device}/{camera}."""
    token_env: str | None = None
    """Environment variable holding the bearer token (none: no auth header)."""
    timeout_s: float = Field(10.0, gt=0)
    """Per-request timeout."""
    retry_min_s: float = Field(1.0, gt=0)
    """First retry delay after a failure."""
    retry_max_s: float = Field(300.0, gt=0)
    """Longest retry delay."""
    scan_interval_s: float = Field(5.0, gt=0)
    """How often the pending queue is scanned."""

    @model_validator(mode="after")
    def _check(self) -> UploadConfig:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"upload.url must start with http:// or https://, got {self.url!r}")
        check_min_max(self, "retry_min_s", "retry_max_s")
        return self

    def token(self) -> str | None:
        """Read the bearer token from the environment variable named by `token_env`."""
        return secret_from_env(self.token_env, "fallback.upload.token_env")


class FallbackConfig(FrozenModel):
    enabled: bool = False
    """Escalate hard frames to Florence-2."""
    model: str = "florence-community/Florence-2-base"
    """Local model directory (transformers layout, or an ONNX export made by `edge-agent florence
    export`) or a Hugging Face hub id (needs internet at first load)."""
    model_version: int = Field(0, ge=0)
    """Version reported in ModelRef of messages."""
    runtime: RuntimeKind = "torch-int8"
    """How Florence-2 runs."""
    task: Task = "<OD>"
    """Task run on each hard frame; region tasks (<REGION_TO_...>) get the box of its least
    confident YOLO detection (a frame without one fails the job)."""
    max_new_tokens: int = Field(128, ge=1, le=1024)
    """Longest generated answer."""
    policy: CameraPolicy = Field(default_factory=CameraPolicy)
    """Hard-frame policy for cameras not listed below."""
    cameras: dict[SafeId, CameraPolicy] = Field(default_factory=dict)
    """Per-camera hard-frame policy, by camera id."""
    rate: RateLimit = Field(default_factory=RateLimit)
    """Escalation budget."""
    worker: Literal["process", "thread"] = "process"
    """Run Florence-2 in a child process (survives crashes, own GIL) or a thread."""
    threads: int = Field(1, ge=1, le=64)
    """Intra-op threads of the Florence-2 runtime."""
    nice: int = Field(10, ge=0, le=19)
    """Niceness added to the worker process."""
    idle_priority: bool = True
    """Process mode on Linux: run the worker under SCHED_IDLE after loading (CPU only when nothing
    else wants it; on a saturated CPU jobs may hit job_timeout_s)."""
    restart_min_s: float = Field(1.0, gt=0)
    """First restart delay after a crash."""
    restart_max_s: float = Field(60.0, gt=0)
    """Longest restart delay."""
    job_timeout_s: float = Field(120.0, gt=0)
    """A job running longer than this kills the worker (process mode)."""
    capture: CaptureConfig = Field(default_factory=CaptureConfig)
    """Hard-frame capture."""
    upload: UploadConfig | None = None
    """Upload captures to the gateway's dataset intake; off when absent."""

    @model_validator(mode="after")
    def _check(self) -> FallbackConfig:
        check_min_max(self, "restart_min_s", "restart_max_s")
        return self

    def policy_for(self, camera: str) -> CameraPolicy:
        """The hard-frame policy of `camera` (its own entry, else the default)."""
        return self.cameras.get(camera, self.policy)
