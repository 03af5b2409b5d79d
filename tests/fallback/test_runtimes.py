"""Both runtimes on the tiny Florence-2: loading through the production path, generation,
ONNX export and int8, agreement with torch, and every bad model directory or input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from agent.fallback.child import FlorenceInputError, check_image
from agent.fallback.config import TASKS
from agent.fallback.factory import create_runtime
from agent.fallback.parse import Region, build_prompt
from agent.fallback.runtime import (
    ONNX_GRAPHS,
    FlorenceModelError,
    FlorenceRuntime,
    check_onnx_dir,
    resolve_model,
)
from tests.fallback.tiny_florence import CLASS_NAMES


@pytest.fixture(scope="module")
def runtimes(tiny_model: Path, onnx_exports: tuple[Path, Path]) -> dict[str, FlorenceRuntime]:
    """All four CPU runtimes, loaded once for the module."""
    fp32, int8 = onnx_exports
    out = {}
    for kind, path in (
        ("torch-fp32", tiny_model),
        ("torch-int8", tiny_model),
        ("onnx-fp32", fp32),
        ("onnx-int8", int8),
    ):
        rt = create_runtime(kind)  # type: ignore[arg-type]
        rt.load(path)
        out[kind] = rt
    yield out
    for rt in out.values():
        rt.close()


def _images(n: int) -> list[np.ndarray]:
    rs = np.random.RandomState(11)
    return [rs.randint(0, 255, (40 + 7 * i, 64 + 5 * i, 3), dtype=np.uint8) for i in range(n)]


def test_torch_int8_quantises_linear_layers(tiny_model: Path) -> None:
    """torch-int8 replaces nn.Linear by dynamically quantised linears and still generates."""
    import torch

    rt = create_runtime("torch-int8")
    rt.load(tiny_model)
    kinds = {type(m).__module__ for m in rt._model.modules()}  # noqa: SLF001 - inspecting the loaded model
    assert any("quantized" in k for k in kinds)
    assert not any(type(m) is torch.nn.Linear for m in rt._model.modules())  # noqa: SLF001
    gen = rt.generate(_images(1)[0], "<OD>", 8)
    assert gen.token_ids[0] == 2 and len(gen.token_ids) <= 9
    rt.close()


def test_export_writes_five_graphs(onnx_exports: tuple[Path, Path]) -> None:
    """The export holds the five graphs of FACTS.md, the processor files and its metadata."""
    for d, precision in zip(onnx_exports, ("fp32", "int8"), strict=True):
        meta, graphs = check_onnx_dir(d)
        assert meta["precision"] == precision
        assert set(graphs) == set(ONNX_GRAPHS)
        assert (d / "tokenizer.json").is_file() and (d / "generation_config.json").is_file()


def test_onnx_graph_interfaces(onnx_exports: tuple[Path, Path]) -> None:
    """Graph inputs/outputs are those the runtime feeds, with the KV cache per layer."""
    import onnx

    fp32, _ = onnx_exports
    dec = onnx.load(str(fp32 / "decoder_with_past.onnx"), load_external_data=False)
    names = [i.name for i in dec.graph.input]
    assert names[:3] == ["input_ids", "encoder_hidden_states", "encoder_attention_mask"]
    assert "past_key_values.0.decoder.key" in names and "past_key_values.0.encoder.value" in names
    assert [o.name for o in dec.graph.output][:3] == [
        "logits",
        "present.0.decoder.key",
        "present.0.decoder.value",
    ]
    vis = onnx.load(str(fp32 / "vision_encoder.onnx"), load_external_data=False)
    assert [i.name for i in vis.graph.input] == ["pixel_values"]


def test_int8_vision_keeps_conv_float(onnx_exports: tuple[Path, Path]) -> None:
    """int8 quantises the vision graph's MatMuls only; its Convs stay float (no ConvInteger)."""
    import onnx

    _, int8 = onnx_exports
    ops = {n.op_type for n in onnx.load(str(int8 / "vision_encoder.int8.onnx")).graph.node}
    assert "Conv" in ops and "ConvInteger" not in ops
    assert "MatMulInteger" in ops or "DynamicQuantizeLinear" in ops


@pytest.mark.parametrize("task", TASKS)
def test_onnx_fp32_same_tokens_as_torch(runtimes: dict[str, FlorenceRuntime], task: str) -> None:
    """Greedy decoding of the fp32 export gives exactly torch's tokens for each task."""
    region = Region(box=(5.0, 6.0, 30.0, 33.0))
    for img in _images(2):
        size = (img.shape[1], img.shape[0])
        prompt = build_prompt(task, CLASS_NAMES, region=region, image_size=size)
        ref = runtimes["torch-fp32"].generate(img, prompt, 24)
        got = runtimes["onnx-fp32"].generate(img, prompt, 24)
        assert got.token_ids == ref.token_ids
        assert got.text == ref.text


def test_int8_agreement_is_measured(runtimes: dict[str, FlorenceRuntime]) -> None:
    """int8 runtimes generate valid sequences; their token agreement with fp32 is reported."""
    prompt = build_prompt("<OD>", CLASS_NAMES)
    agree = {}
    for kind in ("torch-int8", "onnx-int8"):
        matches = []
        for img in _images(4):
            ref = runtimes["torch-fp32"].generate(img, prompt, 16).token_ids
            got = runtimes[kind].generate(img, prompt, 16).token_ids
            assert got[0] == ref[0] == 2 and got[-1] == 2  # start and (forced) end tokens
            same = sum(a == b for a, b in zip(got, ref, strict=False))
            matches.append(same / max(len(got), len(ref)))
        agree[kind] = float(np.mean(matches))
    print(f"token agreement with torch-fp32 (random tiny weights): {agree}")
    assert all(0.0 < v <= 1.0 for v in agree.values())


def test_onnx_int8_vision_features_close(onnx_exports: tuple[Path, Path]) -> None:
    """int8 vision features stay close to fp32 (cosine), thanks to MatMul-only quantisation."""
    import onnxruntime as ort

    fp32, int8 = onnx_exports
    pv = np.random.RandomState(0).randn(1, 3, 64, 64).astype(np.float32)
    a = (
        ort.InferenceSession(str(fp32 / "vision_encoder.onnx"))
        .run(None, {"pixel_values": pv})[0]
        .ravel()
    )
    b = (
        ort.InferenceSession(str(int8 / "vision_encoder.int8.onnx"))
        .run(None, {"pixel_values": pv})[0]
        .ravel()
    )
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    assert cos > 0.95


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("missing", "does not exist"),  # no directory at all
        ("no-config", "missing config.json"),  # incomplete: config.json deleted
        ("no-weights", "no \\*.safetensors"),  # incomplete: weights deleted
        ("no-tokenizer", "missing tokenizer.json"),  # incomplete: tokenizer deleted
        ("not-florence", "not a Florence-2 model"),  # another model type
        ("remote-code", "remote-code"),  # microsoft/Florence-2-* trust_remote_code layout
    ],
)
def test_bad_torch_dir(tiny_model: Path, tmp_path: Path, breakage: str, message: str) -> None:
    """A missing, incomplete or non-Florence directory fails to load with a clear reason."""
    d = tmp_path / "model"
    if breakage != "missing":
        shutil.copytree(tiny_model, d)
    if breakage == "no-config":
        (d / "config.json").unlink()
    elif breakage == "no-weights":
        (d / "model.safetensors").unlink()
    elif breakage == "no-tokenizer":
        (d / "tokenizer.json").unlink()
    elif breakage in ("not-florence", "remote-code"):
        cfg = json.loads((d / "config.json").read_text())
        cfg["model_type"] = "bart" if breakage == "not-florence" else "florence2"
        if breakage == "remote-code":
            cfg["model_type"] = "florence2_remote"
            cfg["auto_map"] = {"AutoConfig": "configuration_florence2.Florence2Config"}
        (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(FlorenceModelError, match=message):
        create_runtime("torch-fp32").load(d)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("torch-dir", "not a Florence-2 ONNX export"),  # a transformers dir given to onnx
        ("no-graph", "missing decoder_with_past"),  # one graph deleted
        ("wrong-precision", "holds a fp32 export"),  # fp32 export with runtime onnx-int8
    ],
)
def test_bad_onnx_dir(
    tiny_model: Path, onnx_exports: tuple[Path, Path], tmp_path: Path, breakage: str, message: str
) -> None:
    """ONNX runtimes refuse a directory that is not a complete export of their precision."""
    fp32, _ = onnx_exports
    d = tiny_model
    if breakage == "no-graph":
        d = tmp_path / "x"
        shutil.copytree(fp32, d)
        (d / "decoder_with_past.onnx").unlink()
    elif breakage == "wrong-precision":
        d = fp32
    with pytest.raises(FlorenceModelError, match=message):
        create_runtime("onnx-int8" if breakage == "wrong-precision" else "onnx-fp32").load(d)


def test_hub_id_without_internet_or_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A hub id that is neither cached nor reachable fails with a clear error."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(
        FlorenceModelError, match="cannot fetch 'florence-community/Florence-2-base'"
    ):
        resolve_model("florence-community/Florence-2-base")


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((0, 10, 3), dtype=np.uint8),  # empty
        np.zeros((10, 10), dtype=np.uint8),  # grey, no channels
        np.zeros((10, 10, 3), dtype=np.float32),  # not uint8
        b"\xff\xd8 not decoded",  # raw bytes, not an image
    ],
)
def test_bad_image_refused(bad: object) -> None:
    """Anything but an (h, w, 3) uint8 image is refused before it reaches the model."""
    with pytest.raises(FlorenceInputError):
        check_image(bad)
