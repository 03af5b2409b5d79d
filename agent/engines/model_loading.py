"""Reading what a model file is: its sha256, its manifest, its Ultralytics metadata.

`load_manifest` and `file_sha256` touch disk; the `parse_*` helpers are pure.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from agent.contracts.manifest import Manifest
from agent.engines.base import EngineError
from agent.util import files
from agent.util.model_meta import imgsz_pair
from agent.util.validation import format_validation_error


class ModelMetadataError(EngineError):
    """Model metadata (Ultralytics `names`/`imgsz`, or a manifest) is unreadable or inconsistent."""


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks.

    Raises:
        EngineError: the file cannot be read.
    """
    try:
        return files.file_sha256(path)
    except OSError as exc:
        raise EngineError(f"cannot read model file {path}: {exc}") from exc


def load_manifest(path: Path) -> Manifest:
    """Read and validate a manifest JSON file.

    Raises:
        ModelMetadataError: missing file, invalid JSON, or a manifest that fails validation
            (every problem listed with its field path).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ModelMetadataError(f"manifest not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelMetadataError(f"cannot read manifest {path}: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelMetadataError(f"manifest {path} is not valid JSON: {exc}") from exc
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise ModelMetadataError(
            f"manifest {path} is invalid: {format_validation_error(exc)}"
        ) from exc


def _index_key(key: object) -> object:
    """A class index key as an int: 3 and "3" (JSON objects have string keys) alike."""
    if isinstance(key, str) and key.isdecimal():
        return int(key)
    return key


def parse_names(raw: str) -> tuple[str, ...]:
    """Ultralytics `names` metadata ("{0: 'person', 1: 'car'}") -> ('person', 'car').

    Parsed with `ast.literal_eval` (literals only, never code). A list literal is accepted
    too. Keys must be exactly 0..n-1, as integers (ONNX metadata: a Python dict repr) or
    as decimal strings (the JSON header of an Ultralytics `.engine`: `{"0": "person"}`).

    Raises:
        ModelMetadataError: not a dict/list literal of strings indexed 0..n-1.
    """
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise ModelMetadataError(f"model metadata 'names' is not a literal: {raw[:200]!r}") from exc
    if isinstance(value, (list, tuple)):
        value = dict(enumerate(value))
    if isinstance(value, dict):
        indexed = {_index_key(k): v for k, v in value.items()}
        if len(indexed) != len(value):  # both 0 and "0": which one is meant?
            raise ModelMetadataError(f"model metadata 'names' repeats an index: {raw[:200]!r}")
        value = indexed
    if not isinstance(value, dict) or not value:
        raise ModelMetadataError(f"model metadata 'names' is not a non-empty dict: {raw[:200]!r}")
    keys_are_ints = all(isinstance(k, int) and not isinstance(k, bool) for k in value)
    if (
        not keys_are_ints
        or sorted(value) != list(range(len(value)))
        or not all(isinstance(v, str) for v in value.values())
    ):
        raise ModelMetadataError(
            f"model metadata 'names' must map 0..n-1 to strings: {raw[:200]!r}"
        )
    return tuple(value[i] for i in range(len(value)))


def parse_imgsz(raw: str) -> tuple[int, int]:
    """Ultralytics `imgsz` metadata ("[320, 320]" or "320") -> (H, W).

    Raises:
        ModelMetadataError: not one or two positive integers.
    """
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise ModelMetadataError(f"model metadata 'imgsz' is not a literal: {raw[:100]!r}") from exc
    pair = imgsz_pair(value)
    if pair is None:
        raise ModelMetadataError(f"model metadata 'imgsz' must be [H, W] > 0: {raw[:100]!r}")
    return pair


def metadata_names(metadata: Mapping[str, str]) -> tuple[str, ...] | None:
    """Class names from Ultralytics metadata, or None when the model has none."""
    raw = metadata.get("names")
    return None if raw is None else parse_names(raw)


def metadata_imgsz(metadata: Mapping[str, str]) -> tuple[int, int] | None:
    """Input (H, W) from Ultralytics metadata, or None when the model has none."""
    raw = metadata.get("imgsz")
    return None if raw is None else parse_imgsz(raw)
