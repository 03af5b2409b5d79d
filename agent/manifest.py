"""The model manifest: what a model artifact is, independent of how it is signed or shipped.

The same model is used for `engines/demo/manifest.json`, the gateway's registry and the
OTA protocol (which wraps it in a signature envelope, see `agent.ota.protocol`).
Pure pydantic: reading files is the caller's job.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agent.ids import SafeId

MANIFEST_SCHEMA = "edge.manifest/1"


class Compat(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_tensorrt: str | None = Field(
        None, description="Lowest TensorRT version a prebuilt engine runs on, e.g. '10.3'."
    )
    gpu_arch: str | None = Field(
        None, description="GPU compute capability a prebuilt engine was built for, e.g. 'sm_87'."
    )


class Manifest(BaseModel):
    """Identity and interface of one model artifact."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["edge.manifest/1"] = Field(
        MANIFEST_SCHEMA, alias="schema", description="Manifest schema id and version."
    )
    name: SafeId = Field(description="Model name; versions are monotonic per name.")
    version: int = Field(ge=1, description="Integer version, monotonic per name.")
    format: Literal["onnx", "engine"] = Field(description="Artifact format.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the artifact bytes.")
    length: int = Field(gt=0, description="Artifact size in bytes.")
    input_size: tuple[int, int] = Field(description="Network input (height, width) in pixels.")
    class_names: list[str] = Field(min_length=1, description="Class index -> label.")
    compat: Compat = Field(default_factory=Compat, description="Where a prebuilt engine runs.")
    created: str = Field(description="Creation time, UTC, RFC 3339.")
    expires: str | None = Field(None, description="After this time (UTC, RFC 3339) it is refused.")
