"""Engine cache: key computation, rebuild-vs-load decision, argument validation, needs_build."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.engines.base import EngineError
from agent.engines.build import (
    calibration_images,
    calibration_set_digest,
    needs_build,
    read_record,
)
from agent.engines.engine_cache import (
    Action,
    BuildArgFacts,
    BuildOptions,
    CacheIdentity,
    EngineRecord,
    EngineRecordError,
    Platform,
    artifact_format_of,
    cache_key,
    calibration_digest,
    check_build_args,
    decide,
    engine_path_for,
    identity_for,
    platform_mismatches,
    precision_from_flags,
    sidecar_path,
)
from agent.engines.ort import OnnxRuntimeConfig
from agent.engines.trt import TensorRTConfig

SHA_A = "a" * 64
SHA_B = "b" * 64
ORIN = Platform(tensorrt_version="10.3.0", gpu_name="Orin (8 SMs)", compute_capability="8.7")


def ident(**changes: object) -> CacheIdentity:
    """A baseline identity with some fields changed."""
    base = dict(
        onnx_sha256=SHA_A,
        tensorrt_version="10.3.0",
        gpu_name="Orin (8 SMs)",
        compute_capability="8.7",
        precision="fp16",
        calibration_sha256=None,
        workspace_mib=1024,
        calib_max_images=None,
        input_hw=None,
    )
    base.update(changes)
    return CacheIdentity.model_validate(base)


def record_for(identity: CacheIdentity, engine_sha: str = SHA_B) -> EngineRecord:
    """The sidecar the builder would write for `identity`."""
    return EngineRecord(
        key=cache_key(identity),
        identity=identity,
        engine_file="m.engine",
        engine_sha256=engine_sha,
        engine_length=10,
        onnx_file="m.onnx",
        built_at="2026-11-27T11:00:00.000Z",
        build_seconds=1.0,
    )


# --------------------------------------------------------------------------- cache key


def test_cache_key_is_deterministic_hex() -> None:
    """The same identity always gives the same 64-hex-digit key."""
    assert cache_key(ident()) == cache_key(ident())
    assert len(cache_key(ident())) == 64 and int(cache_key(ident()), 16) >= 0


@pytest.mark.parametrize(
    "change",
    [
        {"onnx_sha256": SHA_B},  # another model file
        {"tensorrt_version": "10.7.0"},  # TensorRT upgraded with JetPack
        {"gpu_name": "Orin (16 SMs)"},  # AGX Orin instead of Orin Nano
        {"compute_capability": "8.6"},  # another GPU architecture
        {"precision": "int8"},  # another precision
        {"calibration_sha256": SHA_B},  # another calibration set
        {"workspace_mib": 512},  # another builder option
        {"calib_max_images": 100},  # calibration cap
        {"input_hw": (640, 640)},  # another input size for a dynamic model
        {"max_batch": 4},  # an optimisation profile over 1..4 (batching across cameras)
    ],
)
def test_cache_key_changes_with_every_field(change: dict[str, object]) -> None:
    """Changing any one thing the engine depends on changes the key."""
    assert cache_key(ident(**change)) != cache_key(ident())


def test_batch_one_keeps_the_keys_of_engines_built_before_batching() -> None:
    """max_batch 1 is left out of the key (and the record): existing caches stay valid."""
    old = ident().model_dump(mode="json")
    del old["max_batch"]  # a record written before the field existed
    assert cache_key(CacheIdentity.model_validate(old)) == cache_key(ident())
    one = identity_for(SHA_A, ORIN, BuildOptions(precision="fp16"), None)
    four = identity_for(SHA_A, ORIN, BuildOptions(precision="fp16", max_batch=4), None)
    assert one.max_batch is None and four.max_batch == 4
    assert cache_key(one) != cache_key(four)


def test_identity_for_drops_calibration_unless_int8() -> None:
    """A calibration digest does not split the cache of fp16 engines."""
    opts = BuildOptions(precision="fp16")
    assert identity_for(SHA_A, ORIN, opts, SHA_B) == identity_for(SHA_A, ORIN, opts, None)


def test_identity_for_int8_covers_calibration_set() -> None:
    """Two int8 builds from different calibration sets have different keys."""
    opts = BuildOptions(precision="int8", calib_images=Path("/x"))
    k1 = cache_key(identity_for(SHA_A, ORIN, opts, SHA_A))
    k2 = cache_key(identity_for(SHA_A, ORIN, opts, SHA_B))
    assert k1 != k2


# --------------------------------------------------------------------------- decide

GOOD = ident()


@pytest.mark.parametrize(
    ("record", "engine_sha", "action", "reason_part"),
    [
        (record_for(GOOD), SHA_B, Action.LOAD, "cache hit"),  # everything matches
        (None, SHA_B, Action.BUILD, "no sidecar"),  # engine without sidecar
        (EngineRecordError("bad json"), SHA_B, Action.BUILD, "unreadable"),  # corrupt sidecar
        (
            record_for(ident(tensorrt_version="8.6.2")),
            SHA_B,
            Action.BUILD,
            "tensorrt_version: '8.6.2' -> '10.3.0'",
        ),  # built by an older TensorRT
        (
            record_for(ident(gpu_name="Orin (16 SMs)")),
            SHA_B,
            Action.BUILD,
            "gpu_name",
        ),  # built on another Orin
        (
            record_for(ident(compute_capability="8.6")),
            SHA_B,
            Action.BUILD,
            "compute_capability",
        ),  # another architecture
        (record_for(ident(precision="fp32")), SHA_B, Action.BUILD, "precision"),  # precision
        (record_for(ident(onnx_sha256=SHA_B)), SHA_B, Action.BUILD, "onnx_sha256"),  # new model
        (record_for(GOOD), None, Action.BUILD, "missing"),  # engine file deleted
        (record_for(GOOD), SHA_A, Action.BUILD, "truncated"),  # engine file damaged
        (
            record_for(GOOD).model_copy(update={"key": "c" * 64}),
            SHA_B,
            Action.BUILD,
            "edited",
        ),  # key does not match identity
    ],
)
def test_decide(
    record: EngineRecord | EngineRecordError | None,
    engine_sha: str | None,
    action: Action,
    reason_part: str,
) -> None:
    """Only an intact engine whose sidecar matches exactly is loaded; anything else rebuilds."""
    decision = decide(GOOD, record, engine_sha)
    assert decision.action is action
    assert reason_part in decision.reason


@pytest.mark.parametrize(
    ("here", "expected"),
    [
        (ORIN, []),  # same platform
        (ORIN.model_copy(update={"tensorrt_version": "10.7.0"}), ["TensorRT 10.3.0 here 10.7.0"]),
        (
            ORIN.model_copy(
                update={"gpu_name": "NVIDIA GeForce RTX 3060 (28 SMs)", "compute_capability": "8.6"}
            ),
            [
                "GPU Orin (8 SMs) here NVIDIA GeForce RTX 3060 (28 SMs)",
                "compute capability 8.7 here 8.6",
            ],
        ),  # engine copied to another machine
    ],
)
def test_platform_mismatches(here: Platform, expected: list[str]) -> None:
    """The load-time check names what differs between build and load platforms."""
    assert platform_mismatches(ident(), here) == expected


# --------------------------------------------------------------------------- arguments


def facts(**changes: object) -> BuildArgFacts:
    """Facts of a valid fp16 request, with some changed."""
    base: dict[str, object] = dict(
        model=Path("m.onnx"),
        model_exists=True,
        precision="fp16",
        workspace_mib=1024,
        calib_dir=None,
        calib_dir_is_dir=False,
        calib_image_count=0,
        onnx_has_qdq=False,
    )
    base.update(changes)
    return BuildArgFacts(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("f", "problems"),
    [
        (facts(), []),  # fp16, model present
        (facts(model_exists=False), ["m.onnx: file not found"]),  # missing model
        (facts(model=Path("m.engine")), ["m.engine: expected an ONNX model (.onnx)"]),  # not ONNX
        (facts(workspace_mib=0), ["--workspace must be > 0 MiB, got 0"]),  # zero workspace
        (facts(workspace_mib=-5), ["--workspace must be > 0 MiB, got -5"]),  # negative
        (
            facts(precision="int8"),
            [
                "--int8 needs --calib-images DIR (real frames from the camera) "
                "unless the ONNX model is already quantised with Q/DQ nodes"
            ],
        ),
        (facts(precision="int8", onnx_has_qdq=True), []),  # explicit quantisation: no calibrator
        (
            facts(precision="int8", calib_dir=Path("d"), calib_dir_is_dir=False),
            ["--calib-images d: not a directory"],
        ),  # calibration folder missing
        (
            facts(
                precision="int8", calib_dir=Path("d"), calib_dir_is_dir=True, calib_image_count=0
            ),
            ["--calib-images d: no images (.jpg, .jpeg, .png, .bmp) in it"],
        ),  # empty folder
        (
            facts(
                precision="int8", calib_dir=Path("d"), calib_dir_is_dir=True, calib_image_count=3
            ),
            [],
        ),  # int8 with frames
        (
            facts(calib_dir=Path("d"), calib_dir_is_dir=True, calib_image_count=3),
            ["--calib-images is only used with --int8"],
        ),  # calibration without int8
        (
            facts(model_exists=False, workspace_mib=0),
            ["m.onnx: file not found", "--workspace must be > 0 MiB, got 0"],
        ),  # all listed
    ],
)
def test_check_build_args(f: BuildArgFacts, problems: list[str]) -> None:
    """Every invalid combination is reported, each with its own message."""
    assert check_build_args(f) == problems


@pytest.mark.parametrize(
    ("fp16", "int8", "precision"),
    [
        (False, False, "fp32"),  # no flag
        (True, False, "fp16"),  # --fp16
        (False, True, "int8"),  # --int8
        (True, True, "int8"),  # both: int8 (it keeps fp16 fallback anyway)
    ],
)
def test_precision_from_flags(fp16: bool, int8: bool, precision: str) -> None:
    """CLI flags map to one precision."""
    assert precision_from_flags(fp16, int8) == precision


# --------------------------------------------------------------------------- calibration set


def test_calibration_digest_ignores_order() -> None:
    """Listing order does not change the digest."""
    a = [("1.jpg", SHA_A), ("2.jpg", SHA_B)]
    assert calibration_digest(a) == calibration_digest(list(reversed(a)))


@pytest.mark.parametrize(
    "other",
    [
        [("1.jpg", SHA_A)],  # an image removed
        [("1.jpg", SHA_A), ("2.jpg", SHA_A)],  # an image's content changed
        [("1.jpg", SHA_A), ("3.jpg", SHA_B)],  # an image renamed
        [("1.jpg", SHA_A), ("2.jpg", SHA_B), ("3.jpg", SHA_B)],  # an image added
    ],
)
def test_calibration_digest_changes(other: list[tuple[str, str]]) -> None:
    """Any change to the calibration set changes the digest."""
    assert calibration_digest(other) != calibration_digest([("1.jpg", SHA_A), ("2.jpg", SHA_B)])


def test_calibration_images_on_disk(tmp_path: Path) -> None:
    """Only image files are used, sorted by name, capped, and their bytes are hashed."""
    for name in ("b.png", "a.jpg", "c.JPEG", "notes.txt"):
        (tmp_path / name).write_bytes(name.encode())
    (tmp_path / "sub.jpg").mkdir()
    files = calibration_images(tmp_path, 2)
    assert [p.name for p in files] == ["a.jpg", "b.png"]
    before = calibration_set_digest(files)
    (tmp_path / "a.jpg").write_bytes(b"another frame")
    assert calibration_set_digest(files) != before


# --------------------------------------------------------------------------- needs_build


@pytest.mark.parametrize(
    ("config", "fmt", "expected"),
    [
        (OnnxRuntimeConfig(), "onnx", False),  # ONNX Runtime runs ONNX directly: no TensorRT
        (TensorRTConfig(), "onnx", True),  # TensorRT needs an engine built on the device
        (TensorRTConfig(), "engine", False),  # prebuilt engine artifact: nothing to build
    ],
)
def test_needs_build(config: OnnxRuntimeConfig | TensorRTConfig, fmt: str, expected: bool) -> None:
    """The OTA `building` state builds only for TensorRT with an ONNX artifact."""
    assert needs_build(config, fmt) is expected  # type: ignore[arg-type]


def test_needs_build_refuses_engine_on_onnxruntime() -> None:
    """A TensorRT engine artifact cannot run on the onnxruntime backend."""
    with pytest.raises(EngineError, match="cannot run on the onnxruntime backend"):
        needs_build(OnnxRuntimeConfig(), "engine")


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("m.onnx", "onnx"), ("m.ONNX", "onnx"), ("m.engine", "engine"), ("m.plan", "engine")],
)
def test_artifact_format_of(name: str, fmt: str) -> None:
    """The artifact format follows the file suffix."""
    assert artifact_format_of(Path(name)) == fmt


def test_artifact_format_of_unknown() -> None:
    """An unknown suffix is an error, not a guess."""
    with pytest.raises(ValueError, match="unknown model format"):
        artifact_format_of(Path("m.pt"))


# --------------------------------------------------------------------------- paths, sidecar


def test_engine_path_and_sidecar() -> None:
    """One cache slot per (model, sha, precision); the sidecar sits beside the engine."""
    p = engine_path_for(Path("/c"), Path("/m/model.onnx"), SHA_A, "fp16")
    assert p == Path(f"/c/model-{SHA_A[:12]}-fp16.engine")
    assert sidecar_path(p) == Path(f"/c/model-{SHA_A[:12]}-fp16.engine.json")


def test_read_record_round_trip(tmp_path: Path) -> None:
    """A written sidecar reads back equal."""
    rec = record_for(GOOD)
    path = tmp_path / "m.engine.json"
    path.write_text(rec.model_dump_json(by_alias=True))
    assert read_record(path) == rec


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{", "Expecting"),  # truncated JSON
        ('{"schema": "edge.engine/1"}', "key"),  # fields missing
        ('{"schema": "other/9"}', "schema"),  # another schema
    ],
)
def test_read_record_rejects(tmp_path: Path, text: str, match: str) -> None:
    """A damaged sidecar is an EngineRecordError naming the problem."""
    path = tmp_path / "m.engine.json"
    path.write_text(text)
    with pytest.raises(EngineRecordError, match=match):
        read_record(path)


# --------------------------------------------------------------------------- config model


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"type": "tensorrt", "workspace_mib": 0}, "greater than 0"),  # zero workspace
        ({"type": "tensorrt", "precision": "int4"}, "precision"),  # unknown precision
        ({"type": "tensorrt", "calib_images": "/x"}, "only used with precision: int8"),
        ({"type": "tensorrt", "fp16": True}, "Extra inputs"),  # typo / unknown key
    ],
)
def test_tensorrt_config_rejects(data: dict[str, object], match: str) -> None:
    """Bad TensorRT engine settings fail validation with a message."""
    with pytest.raises(ValueError, match=match):
        TensorRTConfig.model_validate(data)


def test_build_options_from_config() -> None:
    """The daemon's engine config maps onto build options."""
    cfg = TensorRTConfig(precision="int8", calib_images=Path("/f"), workspace_mib=512)
    opts = BuildOptions.from_config(cfg)
    assert (opts.precision, opts.calib_images, opts.workspace_mib) == ("int8", Path("/f"), 512)
