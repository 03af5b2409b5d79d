"""The model registry: content-addressed artifacts and release-signed manifests.

`describe_model` checks the file is an ONNX model (without external data: see
`agent.trust.model_check`) or a TensorRT engine, reads class names and input size from the
Ultralytics export metadata where present (`names` "{0: 'person', 1: 'car'}", `imgsz`
"[320, 320]") and hashes it: the unsigned manifest. `models sign` does that on the workstation
and signs it with the release key there; `import_model` verifies such a signed manifest against
the trusted release public keys and registers the file; `add_model` (single-box lab) signs here.
Both refuse a version that is not greater than the last one of that name, store the bytes under
`<data>/artifacts/<sha256>` (temp file, fsync, rename) and record the signed manifest in SQLite.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.contracts.ids import check_id
from agent.contracts.manifest import DEFAULT_KIND, Compat, Manifest, ModelKind
from agent.contracts.ota import OtaRejectedError, SignedManifest, format_rfc3339
from agent.gateway.db import ModelRow, Store
from agent.trust.model_check import NotOnnxError, load_onnx_proto, onnx_problems
from agent.trust.ota import sign_manifest, verify_manifest
from agent.trust.signing import PublicKeyLike
from agent.util.archive import ArchiveError, list_archive
from agent.util.files import file_sha256, fsync_dir
from agent.util.model_meta import imgsz_pair

ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan")
ARCHIVE_SUFFIXES = (".tar",)
FLORENCE_DEFAULT_SIZE = (768, 768)  # Florence-2's processor input; the manifest needs one
_CHUNK = 1024 * 1024


class RegistryError(Exception):
    """A model could not be added; the message says why and what to do."""


@dataclass(frozen=True)
class ModelInterface:
    """What the artifact itself says about its interface (None where it says nothing)."""

    format: str  # "onnx" | "engine"
    input_size: tuple[int, int] | None  # (height, width)
    class_names: list[str] | None
    outputs_per_box: int | None  # 4 + number of classes, when the ONNX output shape is static


def parse_names(text: str) -> list[str]:
    """Parse Ultralytics `names` metadata ("{0: 'person', 1: 'car'}" or a list) into a list."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as err:
        raise RegistryError(f"class names metadata {text[:80]!r} is not a literal: {err}") from None
    if isinstance(value, dict):
        if sorted(value) != list(range(len(value))):
            raise RegistryError(f"class names metadata has indices {sorted(value)}, not 0..n-1")
        names = [value[i] for i in range(len(value))]
    elif isinstance(value, (list, tuple)):
        names = list(value)
    else:
        raise RegistryError(f"class names metadata is a {type(value).__name__}, not a dict/list")
    if not names or not all(isinstance(n, str) and n for n in names):
        raise RegistryError("class names metadata must be non-empty strings")
    return names


def parse_imgsz(text: str) -> tuple[int, int]:
    """Parse Ultralytics `imgsz` metadata ("[320, 320]" or "640") into (height, width)."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as err:
        raise RegistryError(f"imgsz metadata {text!r} is not a literal: {err}") from None
    pair = imgsz_pair(value)
    if pair is None:
        raise RegistryError(f"imgsz metadata {text!r} is not [height, width]")
    return pair


def _static_dims(value_info: object) -> list[int | None]:
    dims = value_info.type.tensor_type.shape.dim  # type: ignore[attr-defined]
    return [d.dim_value if d.HasField("dim_value") else None for d in dims]


def inspect_onnx(path: Path) -> ModelInterface:
    """Read the interface of an ONNX model; RegistryError if the file is not ONNX."""
    try:
        model = load_onnx_proto(path)
    except NotOnnxError as err:
        raise RegistryError(str(err)) from None
    problems = onnx_problems(model)
    if problems:
        raise RegistryError(f"{path}: refused (incompatible): {'; '.join(problems[:5])}")
    if not model.graph.input or not model.graph.output:
        raise RegistryError(f"{path}: ONNX model has no graph inputs/outputs")
    meta = {p.key: p.value for p in model.metadata_props}
    names = parse_names(meta["names"]) if "names" in meta else None
    size = parse_imgsz(meta["imgsz"]) if "imgsz" in meta else None
    in_dims = _static_dims(model.graph.input[0])
    if size is None and len(in_dims) == 4 and in_dims[2] and in_dims[3]:
        size = (int(in_dims[2]), int(in_dims[3]))
    out_dims = _static_dims(model.graph.output[0])
    per_box = int(out_dims[1]) if len(out_dims) == 3 and out_dims[1] else None
    return ModelInterface("onnx", size, names, per_box)


def inspect_engine(path: Path) -> ModelInterface:
    """Read the interface of a TensorRT engine file (Ultralytics metadata header if present).

    Ultralytics writes a 4-byte little-endian length and that many bytes of JSON metadata
    before the serialised engine.
    """
    with path.open("rb") as f:
        head = f.read(4)
        if len(head) < 4:
            raise RegistryError(f"{path}: too short to be a TensorRT engine")
        (n,) = struct.unpack("<i", head)
        meta_bytes = f.read(n) if 0 < n < 1_000_000 else b""
    try:
        meta = json.loads(meta_bytes.decode("utf-8")) if meta_bytes else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        meta = None
    if not isinstance(meta, dict):
        return ModelInterface("engine", None, None, None)
    names = meta.get("names")
    imgsz = meta.get("imgsz")
    class_names: list[str] | None = None
    if isinstance(names, dict):
        class_names = parse_names(repr({int(k): v for k, v in names.items()}))
    elif names is not None:
        class_names = parse_names(repr(names))
    size = parse_imgsz(str(imgsz)) if imgsz is not None else None
    return ModelInterface("engine", size, class_names, None)


def inspect(path: Path) -> ModelInterface:
    """Dispatch on the file name: .onnx, or .engine/.plan; anything else is refused."""
    if not path.is_file():
        raise RegistryError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return inspect_onnx(path)
    if suffix in ENGINE_SUFFIXES:
        return inspect_engine(path)
    if suffix in ARCHIVE_SUFFIXES:
        return inspect_archive(path)
    raise RegistryError(
        f"{path}: not an ONNX model (.onnx) or a TensorRT engine (.engine/.plan), nor a "
        "Florence-2 archive (.tar, edge-agent florence pack); refusing"
    )


def inspect_archive(path: Path) -> ModelInterface:
    """A Florence-2 archive: every member passes the device's unpacking rules, and it holds a
    model (a transformers `config.json` or an ONNX set's `florence_onnx.json`)."""
    try:
        entries = list_archive(path)
    except ArchiveError as err:
        raise RegistryError(f"{path}: {err}") from None
    names = {e.name.rsplit("/", 1)[-1] for e in entries if not e.is_dir}
    if not names & {"config.json", "florence_onnx.json"}:
        raise RegistryError(
            f"{path}: no config.json or florence_onnx.json inside: not a Florence-2 model"
        )
    return ModelInterface("tar", FLORENCE_DEFAULT_SIZE, None, None)


def parse_labels(value: str) -> list[str]:
    """`--labels`: a file with one class name per line, or a comma-separated list."""
    p = Path(value)
    if p.is_file():
        names = [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]
        names = [n for n in names if n]
    else:
        names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise RegistryError(f"--labels {value!r} gives no class names")
    return names


def _store_artifact(src: Path, artifacts_dir: Path) -> tuple[str, int, Path]:
    """Copy `src` into the content-addressed store; returns (sha256, length, stored path)."""
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    tmp = artifacts_dir / f".incoming-{os.getpid()}-{time.monotonic_ns()}"
    h = hashlib.sha256()
    length = 0
    try:
        with src.open("rb") as fin, tmp.open("wb") as fout:
            while chunk := fin.read(_CHUNK):
                h.update(chunk)
                fout.write(chunk)
                length += len(chunk)
            fout.flush()
            os.fsync(fout.fileno())
        digest = h.hexdigest()
        dest = artifacts_dir / digest
        if dest.exists():
            tmp.unlink()
        else:
            os.replace(tmp, dest)
            fsync_dir(artifacts_dir)
    finally:
        if tmp.exists():
            tmp.unlink()
    if length == 0:
        raise RegistryError(f"{src}: empty file")
    return digest, length, dest


@dataclass(frozen=True)
class ManifestRequest:
    """What the operator says about a model; the rest comes from the file itself.

    `labels` and `input_size` override the file's metadata; `expires` is RFC 3339 or None.
    """

    name: str
    version: int
    labels: list[str] | None = None
    input_size: tuple[int, int] | None = None
    compat: Compat | None = None
    kind: ModelKind = DEFAULT_KIND
    generation: int = 0
    expires: str | None = None


def describe_model(path: Path, req: ManifestRequest, created: float) -> Manifest:
    """The manifest of the model file at `path` (inspected, checked, hashed); not signed.

    Needs no gateway state: `models sign` runs it on the workstation, `models add` here.
    Raises RegistryError with the reason.
    """
    try:
        check_id(req.name, "model name")
    except ValueError as err:
        raise RegistryError(str(err)) from None
    if req.version < 1:
        raise RegistryError(f"version must be >= 1, got {req.version}")
    if req.generation < 0:
        raise RegistryError(f"generation must be >= 0, got {req.generation}")
    iface = inspect(path)
    if (iface.format == "tar") != (req.kind == "florence2"):
        raise RegistryError(
            f"{path}: a .tar archive is a Florence-2 model (--kind florence2) and a florence2 "
            f"model is a .tar archive (edge-agent florence pack); got {iface.format} for kind "
            f"{req.kind}"
        )
    class_names = req.labels or iface.class_names
    if class_names is None and iface.format == "tar":
        class_names = ["object"]  # Florence-2 is open-vocabulary: the list is informative
    if class_names is None:
        raise RegistryError(f"{path}: no class names in the file's metadata; pass --labels")
    size = req.input_size or iface.input_size
    if size is None:
        raise RegistryError(f"{path}: no input size in the file's metadata; pass --imgsz H,W")
    if iface.outputs_per_box is not None and iface.outputs_per_box - 4 != len(class_names):
        raise RegistryError(
            f"{path}: the model outputs {iface.outputs_per_box - 4} classes per box but "
            f"{len(class_names)} class names were given"
        )
    length = path.stat().st_size
    if length == 0:
        raise RegistryError(f"{path}: empty file")
    return Manifest(
        name=req.name,
        version=req.version,
        format=iface.format,  # type: ignore[arg-type]
        sha256=file_sha256(path),
        length=length,
        input_size=size,
        class_names=class_names,
        compat=(
            engine_compat(path, req.compat) if iface.format == "engine" else req.compat or Compat()
        ),
        created=format_rfc3339(created),
        expires=req.expires,
        kind=req.kind,
        generation=req.generation,
    )


def expires_after(days: float | None, now: float) -> str | None:
    """RFC 3339 time `days` after `now` (None: never; only for a lab that asks for it)."""
    if days is None:
        return None
    if days <= 0:
        raise RegistryError(f"--expires-days must be > 0, got {days}")
    return format_rfc3339(now + days * 86400)


def _check_new_version(store: Store, name: str, version: int) -> None:
    latest = store.latest_version(name)
    if latest is not None and version <= latest:
        raise RegistryError(
            f"model {name}: version {version} is not greater than the latest ({latest}); "
            f"use --version {latest + 1} or higher"
        )


def _record(
    store: Store, artifacts_dir: Path, path: Path, signed: SignedManifest, created: float
) -> ModelRow:
    """Store the artifact (it must be the manifest's bytes) and the signed manifest."""
    manifest = signed.manifest
    digest, length, _ = _store_artifact(path, artifacts_dir)
    if (digest, length) != (manifest.sha256, manifest.length):
        raise RegistryError(
            f"{path} changed while it was registered (sha256 {digest}, {length} bytes; the "
            f"manifest says {manifest.sha256}, {manifest.length} bytes)"
        )
    row = ModelRow(
        name=manifest.name,
        version=manifest.version,
        format=manifest.format,
        sha256=digest,
        length=length,
        manifest=manifest.model_dump(mode="json", by_alias=True),
        signed=signed.model_dump(mode="json", by_alias=True),
        created=created,
    )
    try:
        store.add_model(row)
    except ValueError as err:  # a concurrent add won the race
        raise RegistryError(str(err)) from None
    return row


def engine_compat(path: Path, given: Compat | None) -> Compat:
    """An engine's compat, completed from its build record `<engine>.json` when there is one.

    `edge-agent engine build` records the exact TensorRT version and device model the engine
    was built with; devices refuse engines whose compat does not name both.
    """
    compat = given or Compat()
    try:
        ident = json.loads(path.with_name(path.name + ".json").read_text(encoding="utf-8"))
        ident, vc = ident["identity"], bool(ident.get("version_compatible", False))
        found = {"tensorrt": ident["tensorrt_version"], "gpu_name": ident["gpu_name"]}
        found["gpu_arch"] = "sm_" + str(ident["compute_capability"]).replace(".", "")
    except (OSError, ValueError, KeyError, TypeError):
        return compat  # no build record: the compat given is all there is
    fill = {k: v for k, v in found.items() if getattr(compat, k) is None}
    return Compat(**{**compat.model_dump(), **fill, "version_compatible": vc})


def add_model(
    store: Store,
    artifacts_dir: Path,
    release_key: Ed25519PrivateKey,
    path: Path,
    *,
    name: str,
    version: int,
    labels: list[str] | None = None,
    input_size: tuple[int, int] | None = None,
    compat: Compat | None = None,
    expires: str | None = None,
    kind: ModelKind = DEFAULT_KIND,
    generation: int = 0,
    now: float | None = None,
) -> ModelRow:
    """Validate, store and sign one model version here (single-box lab: the release key is on
    this machine). Raises RegistryError with the reason."""
    created = time.time() if now is None else now
    req = ManifestRequest(name, version, labels, input_size, compat, kind, generation, expires)
    manifest = describe_model(path, req, created)
    _check_new_version(store, name, version)
    return _record(store, artifacts_dir, path, sign_manifest(manifest, release_key), created)


def import_model(
    store: Store,
    artifacts_dir: Path,
    release_keys: Mapping[str, PublicKeyLike],
    path: Path,
    signed: SignedManifest,
    *,
    now: float | None = None,
) -> ModelRow:
    """Register an artifact signed elsewhere (`models sign` on the workstation).

    The release signature must verify with a trusted key and the manifest must not have
    expired; the file must be the manifest's bytes (sha256, length) and pass the same checks
    as `models add` (format, no external data). Raises RegistryError with the reason.
    """
    created = time.time() if now is None else now
    if not release_keys:
        raise RegistryError(
            "no trusted release key: add the workstation's public key under trust.release_keys "
            "in the gateway config (printed by `edge-gateway keys init --release-only`)"
        )
    try:
        manifest = verify_manifest(
            signed, release_keys, datetime.fromtimestamp(created, timezone.utc)
        )
    except OtaRejectedError as err:
        raise RegistryError(f"manifest refused: {err.reason.value}: {err.detail}") from None
    length = path.stat().st_size
    if length != manifest.length or file_sha256(path) != manifest.sha256:
        raise RegistryError(
            f"{path} is not the signed artifact ({length} bytes; the manifest says "
            f"{manifest.length} bytes, sha256 {manifest.sha256})"
        )
    iface = inspect(path)
    if iface.format != manifest.format:
        raise RegistryError(f"{path} is {iface.format}, the manifest says {manifest.format}")
    _check_new_version(store, manifest.name, manifest.version)
    return _record(store, artifacts_dir, path, signed, created)
