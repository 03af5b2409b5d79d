"""Our own check of an ONNX model before anything loads or builds it: no external data.

A signed model is still untrusted input. An ONNX tensor may keep its bytes in another file
(`data_location: EXTERNAL`, with a `location` key naming the file); ONNX Runtime before 1.24.1
(ORT PR #26776) follows a `location` such as `../../etc/passwd` outside the model's directory,
and Jetson builds of ONNX Runtime lag PyPI. Our artifacts are one file with one sha256, so any
external data is refused, and the refusal names the tensors whose location escapes the model
directory.

Both sides import this module: the gateway at `models add` / `models import`, the device after
verifying a downloaded artifact and before building or loading it. It needs only the `onnx`
package (protobuf), imported inside `check_onnx_file`; never ONNX Runtime, OpenCV or engines.
`onnx_problems` is pure: it walks an already parsed `onnx.ModelProto`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from agent.contracts.manifest import Manifest
from agent.contracts.ota import OtaRejectedError, Reason

EXTERNAL = 1  # onnx.TensorProto.EXTERNAL (DataLocation); kept here so the walk needs no import


class ModelCheckError(Exception):
    """The model is refused before any load; the message lists each problem."""


class NotOnnxError(ModelCheckError):
    """The file does not parse as an ONNX model (or the check cannot run without `onnx`)."""


class ExternalDataError(ModelCheckError):
    """A tensor of the model keeps its data outside the model file."""


@dataclass(frozen=True)
class ExternalRef:
    """One tensor that keeps its data outside the model file.

    Attributes:
        where: the tensor's place in the model, e.g. "graph.initializer[conv.weight]".
        location: its `location` key ("" if none was given).
    """

    where: str
    location: str

    @property
    def escapes(self) -> bool:
        """True if `location` points outside the model's directory (absolute, `..`, a drive)."""
        return location_escapes(self.location)


def location_escapes(location: str) -> bool:
    """True if an external-data `location` leaves the directory of the model file."""
    if not location:
        return False
    for path in (PurePosixPath(location), PureWindowsPath(location)):
        if path.is_absolute() or path.drive or path.root or ".." in path.parts:
            return True
    return "\x00" in location


def _tensor_refs(tensor: Any, where: str) -> Iterator[ExternalRef]:
    entries = {e.key: e.value for e in tensor.external_data}
    if tensor.data_location == EXTERNAL or entries:
        yield ExternalRef(where=where, location=entries.get("location", ""))


def _graph_refs(graph: Any, where: str) -> Iterator[ExternalRef]:
    for t in graph.initializer:
        yield from _tensor_refs(t, f"{where}.initializer[{t.name}]")
    for s in graph.sparse_initializer:
        yield from _tensor_refs(s.values, f"{where}.sparse_initializer[{s.values.name}].values")
        yield from _tensor_refs(s.indices, f"{where}.sparse_initializer[{s.values.name}].indices")
    for node in graph.node:
        yield from _node_refs(node, f"{where}.node[{node.name or node.op_type}]")


def _node_refs(node: Any, where: str) -> Iterator[ExternalRef]:
    for attr in node.attribute:
        here = f"{where}.{attr.name}"
        if attr.HasField("t"):
            yield from _tensor_refs(attr.t, here)
        for i, t in enumerate(attr.tensors):
            yield from _tensor_refs(t, f"{here}[{i}]")
        if attr.HasField("g"):
            yield from _graph_refs(attr.g, here)
        for i, g in enumerate(attr.graphs):
            yield from _graph_refs(g, f"{here}[{i}]")


def external_refs(model: Any) -> list[ExternalRef]:
    """Every tensor of `model` (an onnx.ModelProto) that keeps its data outside the file.

    Walks initializers, sparse initializers, tensor attributes and subgraphs (If/Loop/Scan
    bodies) of the main graph and of every local function.
    """
    refs = list(_graph_refs(model.graph, "graph"))
    for fn in model.functions:
        for node in fn.node:
            refs += _node_refs(node, f"function[{fn.name}].node[{node.name or node.op_type}]")
    return refs


def onnx_problems(model: Any) -> list[str]:
    """Why `model` (an onnx.ModelProto) must not be loaded; empty if it may."""
    problems = []
    for ref in external_refs(model):
        if ref.escapes:
            problems.append(
                f"{ref.where}: external data at {ref.location!r} escapes the model directory"
            )
        else:
            problems.append(
                f"{ref.where}: external data in {ref.location or '(no location)'!r}; a model "
                "artifact must be one self-contained file"
            )
    return problems


def load_onnx_proto(path: Path) -> Any:
    """Parse the ONNX file at `path` into an onnx.ModelProto without loading external data.

    Raises NotOnnxError if it does not parse, or if `onnx` is missing (then the check cannot
    run, so the model is not trusted).
    """
    try:
        import onnx
        from google.protobuf.message import Error as ProtobufError
    except ImportError:
        raise NotOnnxError(
            "the `onnx` package is needed to check a model before loading it; install the "
            "`cpu`, `gpu` or `jetson` extra"
        ) from None
    try:
        return onnx.load(str(path), load_external_data=False)
    except (ProtobufError, OSError, ValueError, RuntimeError) as err:
        raise NotOnnxError(f"{path}: not a valid ONNX model ({type(err).__name__})") from None


def check_onnx_file(path: Path) -> None:
    """Refuse the ONNX file at `path` if it is not ONNX or any tensor keeps data outside it.

    Raises NotOnnxError or ExternalDataError (both ModelCheckError).
    """
    problems = onnx_problems(load_onnx_proto(path))
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ExternalDataError(f"{path}: refused before loading: {shown}{more}")


def check_artifact(path: Path, manifest: Manifest) -> None:
    """The device's check of a verified artifact before build or load (ONNX only for now).

    Raises OtaRejectedError: `incompatible` for external data, `load_failed` for a file that
    is not ONNX at all. A prebuilt engine passes (its `compat` is checked before download).
    """
    if manifest.format != "onnx":
        return
    try:
        check_onnx_file(path)
    except ExternalDataError as err:
        raise OtaRejectedError(Reason.INCOMPATIBLE, str(err)) from None
    except NotOnnxError as err:
        raise OtaRejectedError(Reason.LOAD_FAILED, str(err)) from None
