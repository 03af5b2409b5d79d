"""Config of the device side of OTA model updates (the `ota:` section of the agent YAML)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from agent.util.models import FrozenModel
from agent.yamlconfig import secret_from_env

MOVED_TO_TRUST = ("release_keys", "gateway_keys", "allowed_models")


class FlorenceOtaConfig(FrozenModel):
    """Over-the-air updates of the Florence-2 fallback model (its own slot, docs/ota.md)."""

    enabled: bool = True
    """Take signed `kind: florence2` models (needs `ota.enabled` and `fallback.enabled`); off: such
    commands are refused as `incompatible`."""
    max_unpacked_bytes: int = Field(8 * 1024**3, gt=0)
    """Cap on the bytes written while unpacking an archive (an uncompressed tar never unpacks to
    more than its signed length; this is a second bound)."""
    validation_frames: int = Field(2, ge=1, le=20)
    """Recent frames the new model must answer before the swap."""
    latency_budget_ms: float = Field(120000.0, gt=0)
    """Largest job time (pre + generation) in validation and as p99 during probation."""
    probation_s: float = Field(300.0, ge=0)
    """How long the new model's jobs are watched before committing."""
    probation_min_jobs: int = Field(3, ge=0)
    """Jobs the new model must finish before it can be committed; probation is extended (up to 3x)
    to reach them (hard frames are rare: size it to your rate)."""
    probation_max_error_rate: float = Field(0.2, ge=0, le=1)
    """Largest share of jobs that may fail (worker errors, crashes, answers that do not parse)
    during probation."""

    def slot_config(self, ota: OtaConfig) -> OtaConfig:
        """The OTA settings the Florence-2 slot's manager runs with: downloads and keys as
        `ota`, trial and probation from this section, hot swaps between jobs, no detector
        child trial (the worker loads every candidate in its own process)."""
        return ota.model_copy(
            update={
                "validation_frames": self.validation_frames,
                "latency_budget_ms": self.latency_budget_ms,
                "probation_s": self.probation_s,
                "probation_min_frames": self.probation_min_jobs,
                "probation_max_error_rate": self.probation_max_error_rate,
                "probation_min_detection_ratio": 0.0,  # finding nothing is a valid answer
                "swap_mode": "hot",
                "candidate_check": False,
            }
        )


class OtaConfig(FrozenModel):
    """The `ota:` section (unknown keys are errors)."""

    enabled: bool = False
    """Accept OTA commands on edge/<device>/ota/command (needs `trust:` keys)."""
    gateway_token_env: str | None = None
    """Environment variable holding this device's gateway token (from `edge-gateway devices
    enroll`), sent as a bearer with artifact downloads; the same token as fallback.upload.token_env.
    None: no Authorization header."""
    max_command_bytes: int = Field(64 * 1024, ge=1024, le=1024 * 1024)
    """Largest command payload accepted."""
    max_artifact_bytes: int = Field(1024 * 1024 * 1024, gt=0)
    """Largest model artifact a manifest may announce."""
    connect_timeout_s: float = Field(10.0, gt=0)
    """HTTP connect timeout."""
    read_timeout_s: float = Field(15.0, gt=0)
    """Longest wait for the next bytes of the body before retrying."""
    download_deadline_s: float = Field(900.0, gt=0)
    """Whole download (all attempts) must finish within this time."""
    download_attempts: int = Field(5, ge=1, le=100)
    """Connections tried per download; each resumes with Range."""
    retry_backoff_s: float = Field(0.5, ge=0)
    """Pause before the second attempt; doubles per attempt, capped at 10 s."""
    disk_margin_bytes: int = Field(16 * 1024 * 1024, ge=0)
    """Free space required beyond the artifact length before a download starts."""
    progress_interval_s: float = Field(1.0, gt=0)
    """Shortest interval between two retained progress states."""
    validation_frames: int = Field(5, ge=1, le=100)
    """Recent real frames the new model must handle before the swap."""
    latency_budget_ms: float = Field(1000.0, gt=0)
    """Largest per-frame latency (pre+infer+post) allowed in validation and as p99 during
    probation."""
    swap_mode: Literal["hot", "pause"] = "hot"
    """hot: load beside the old model and swap between frames; pause: stop inference, unload the old
    model, load the new one, resume (for small memory)."""
    swap_timeout_s: float = Field(10.0, gt=0)
    """Longest wait for the inference loop to take the new model."""
    probation_s: float = Field(30.0, ge=0)
    """How long health is watched after a swap before committing."""
    probation_min_frames: int = Field(5, ge=0)
    """Frames the new model must process before it can be committed; probation is extended (up to
    3x) to reach it."""
    probation_max_error_rate: float = Field(0.05, ge=0, le=1)
    """Largest share of frames that may fail during probation."""
    probation_min_detection_ratio: float = Field(0.2, ge=0)
    """Detections per frame during probation must be at least this share of the old model's rate
    just before the swap (ignored when that rate was below `probation_baseline_min_rate`)."""
    probation_baseline_min_rate: float = Field(0.5, ge=0)
    """Old model's detections per frame needed to judge the ratio."""
    baseline_window_s: float = Field(30.0, gt=0)
    """Window before the swap used as the old model's baseline."""
    keep_previous: int = Field(1, ge=1, le=5)
    """Model versions kept besides the active one (for rollback)."""
    crash_loop_boots: int = Field(3, ge=1, le=100)
    """Starts on probation without a commit before the next start rolls back to the previous
    model."""
    committed_crashes: int = Field(3, ge=1, le=100)
    """Daemon crashes (a run that ends without an orderly stop) on a committed model within
    `committed_crash_window_s` after which the next start rolls back to the previous model, once
    (`rolled_back: crash_loop`)."""
    committed_crash_window_s: float = Field(900.0, gt=0)
    """Window in which `committed_crashes` crashes count."""
    candidate_check: bool = True
    """Load and try each candidate in a memory-limited child process before the daemon loads it (a
    failure there is `validation_failed`)."""
    candidate_memory_mb: int = Field(3072, ge=256)
    """Memory limit of that child in MiB: address space (RLIMIT_AS) on CPU, cgroup MemoryMax on
    TensorRT. A CPU child with the demo model peaks near 0.45 GiB of address space."""
    candidate_limit: Literal["auto", "rlimit", "cgroup"] = "auto"
    """How the limit is applied: auto = cgroup (a transient systemd scope) for TensorRT, whose CUDA
    context cannot start under RLIMIT_AS, rlimit otherwise."""
    candidate_timeout_s: float = Field(300.0, gt=0)
    """Longest the child may take to load and try the candidate."""
    florence2: FlorenceOtaConfig = Field(default_factory=FlorenceOtaConfig)
    """Updates of the Florence-2 fallback model (`kind: florence2`)."""

    @model_validator(mode="before")
    @classmethod
    def _keys_moved(cls, data: object) -> object:
        moved = sorted(k for k in MOVED_TO_TRUST if isinstance(data, dict) and k in data)
        if moved:
            raise ValueError(
                f"{', '.join(moved)} moved to the `trust:` section (trust.{moved[0]}; "
                "docs/trust.md): one place for every key the device trusts"
            )
        return data

    def gateway_token(self) -> str | None:
        """The token from the environment variable named by `gateway_token_env` (None if unset)."""
        return secret_from_env(self.gateway_token_env, "ota.gateway_token_env")
