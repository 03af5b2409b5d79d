"""The model registry: ONNX metadata, refusals, content addressing, signed manifests."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from agent.contracts.ota import SignedManifest
from agent.gateway.db import Store
from agent.gateway.keys import KeyRole, init_keys, load_key, public_info
from agent.gateway.registry import RegistryError, add_model, parse_imgsz, parse_names
from agent.trust.ota import verify_manifest


def tiny_onnx(path: Path, meta: dict[str, str], nc: int = 2, hw: int = 64) -> Path:
    """A real (tiny) ONNX graph: input [1,3,hw,hw] -> output [1, 4+nc, 8]."""
    inp = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, hw, hw])
    out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 4 + nc, 8])
    shape = helper.make_tensor("shape", TensorProto.INT64, [3], [1, 4 + nc, 8])
    node = helper.make_node("ConstantOfShape", ["shape_in"], ["output0"])
    const = helper.make_node("Constant", [], ["shape_in"], value=shape)
    graph = helper.make_graph([const, node], "g", [inp], [out])
    model = helper.make_model(graph)
    for k, v in meta.items():
        p = model.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(model, str(path))
    return path


@pytest.fixture
def reg(tmp_path: Path):
    init_keys(tmp_path / "keys")
    store = Store(tmp_path / "gw.sqlite3")
    yield store, tmp_path / "artifacts", load_key(tmp_path / "keys", KeyRole.RELEASE), tmp_path
    store.close()


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("{0: 'person', 1: 'car'}", ["person", "car"]),  # Ultralytics dict form
        ("['a', 'b']", ["a", "b"]),  # list form
    ],
)
def test_parse_names(text: str, names: list[str]) -> None:
    """Ultralytics `names` metadata parses to an index-ordered list."""
    assert parse_names(text) == names


@pytest.mark.parametrize(
    "text",
    [
        "{1: 'a'}",  # indices not starting at 0
        "__import__('os')",  # not a literal
        "42",  # not a dict or list
    ],
)
def test_parse_names_rejects(text: str) -> None:
    """Names metadata that is not an index-complete literal is refused."""
    with pytest.raises(RegistryError):
        parse_names(text)


@pytest.mark.parametrize(("text", "size"), [("[320, 320]", (320, 320)), ("640", (640, 640))])
def test_parse_imgsz(text: str, size: tuple[int, int]) -> None:
    """imgsz metadata gives (height, width)."""
    assert parse_imgsz(text) == size


def test_add_reads_metadata_stores_by_hash_and_signs(reg) -> None:
    """Class names and input size come from the ONNX metadata; the manifest verifies."""
    store, arts, key, tmp = reg
    path = tiny_onnx(tmp / "m.onnx", {"names": "{0: 'person', 1: 'car'}", "imgsz": "[64, 64]"})
    row = add_model(store, arts, key, path, name="det", version=1)
    assert (arts / row.sha256).read_bytes() == path.read_bytes()
    env = SignedManifest.model_validate(row.signed)
    pub = public_info(tmp / "keys", KeyRole.RELEASE)
    m = verify_manifest(env, {pub.key_id: pub.public_key})
    assert (m.class_names, m.input_size, m.length) == (
        ["person", "car"],
        (64, 64),
        path.stat().st_size,
    )


def test_input_size_falls_back_to_the_graph_and_labels_to_the_option(reg) -> None:
    """Without metadata the static input shape gives the size and --labels the classes."""
    store, arts, key, tmp = reg
    path = tiny_onnx(tmp / "m.onnx", {}, nc=3, hw=96)
    row = add_model(store, arts, key, path, name="det", version=1, labels=["a", "b", "c"])
    assert row.manifest["input_size"] == [96, 96]
    assert row.manifest["class_names"] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("text", "not an ONNX model"),  # a .txt file
        ("garbage_onnx", "not a valid ONNX model"),  # .onnx that is not ONNX
        ("no_labels", "pass --labels"),  # nothing says the class names
        ("label_count", "outputs 2 classes per box but 3"),  # labels disagree with the output
        ("backwards", "not greater than the latest (2)"),  # version goes backwards
        ("same", "not greater than the latest (2)"),  # same version again
        ("bad_name", "invalid model name"),  # a name with a path trick
    ],
)
def test_add_refusals(reg, setup: str, message: str) -> None:
    """Bad files, versions and names are refused with a message saying why."""
    store, arts, key, tmp = reg
    good = tiny_onnx(tmp / "good.onnx", {"names": "{0: 'a', 1: 'b'}"})
    add_model(store, arts, key, good, name="det", version=2)
    kwargs: dict = {"name": "det", "version": 3}
    path = good
    if setup == "text":
        path = tmp / "model.txt"
        path.write_text("hello")
    elif setup == "garbage_onnx":
        path = tmp / "x.onnx"
        path.write_bytes(b"\x00garbage" * 100)
    elif setup == "no_labels":
        path = tiny_onnx(tmp / "n.onnx", {})
    elif setup == "label_count":
        kwargs["labels"] = ["a", "b", "c"]
    elif setup == "backwards":
        kwargs["version"] = 1
    elif setup == "same":
        kwargs["version"] = 2
    elif setup == "bad_name":
        kwargs["name"] = "../evil"
    with pytest.raises(RegistryError, match=message.replace("(", r"\(").replace(")", r"\)")):
        add_model(store, arts, key, path, **kwargs)
    assert [m.version for m in store.models()] == [2]


def test_engine_file_with_ultralytics_header(reg) -> None:
    """A .engine with Ultralytics' length-prefixed JSON header gives names and size."""
    import json
    import struct

    store, arts, key, tmp = reg
    meta = json.dumps({"names": {"0": "person"}, "imgsz": [640, 640]}).encode()
    path = tmp / "m.engine"
    path.write_bytes(struct.pack("<i", len(meta)) + meta + b"\x01" * 1000)
    row = add_model(store, arts, key, path, name="det", version=1)
    assert row.format == "engine"
    assert row.manifest["class_names"] == ["person"] and row.manifest["input_size"] == [640, 640]
