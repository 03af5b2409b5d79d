"""Florence-2 model archives: deterministic packing, and unpacking that refuses every path trick.

Each attack is a real tar file written with `tarfile`; the device's build hook must refuse it
with `bad_archive` and leave nothing on disk."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from agent.contracts.manifest import Manifest
from agent.contracts.ota import OtaRejectedError, Reason
from agent.fallback.ota_host import UNPACKED, model_dir_of, prepare_archive
from agent.util.archive import ArchiveError, list_archive, pack, tree_sha256, unpack
from agent.util.files import file_sha256
from tests.helpers.external_data import external_data_model


def _model_dir(root: Path) -> Path:
    d = root / "florence"
    (d / "sub").mkdir(parents=True)
    (d / "config.json").write_text('{"model_type": "florence2"}')
    (d / "model.safetensors").write_bytes(bytes(range(256)) * 40)
    (d / "sub" / "tokenizer.json").write_text("{}")
    return d


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _manifest(path: Path) -> Manifest:
    return Manifest(
        name="florence2-tiny",
        version=2,
        format="tar",
        sha256=file_sha256(path),
        length=path.stat().st_size,
        input_size=(768, 768),
        class_names=["object"],
        created="2026-11-29T00:00:00Z",
        kind="florence2",
    )


def test_pack_is_deterministic_and_round_trips(tmp_path: Path) -> None:
    src = _model_dir(tmp_path)
    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    pack(src, a)
    (src / "config.json").touch()  # a new mtime must not change the bytes
    pack(src, b)
    assert a.read_bytes() == b.read_bytes()
    names = [e.name for e in list_archive(a)]
    assert names == sorted(names) and "sub/tokenizer.json" in names
    out = tmp_path / "out"
    written = unpack(a, out, max_bytes=a.stat().st_size)
    assert written == sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    assert tree_sha256(out) == tree_sha256(src)


def test_pack_refuses_links(tmp_path: Path) -> None:
    src = _model_dir(tmp_path)
    (src / "link").symlink_to("/etc/passwd")
    with pytest.raises(ArchiveError, match="links"):
        pack(src, tmp_path / "x.tar")


def _symlink() -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo("config.json")
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    return info, None


def _hardlink() -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo("weights.bin")
    info.type, info.linkname = tarfile.LNKTYPE, "/etc/shadow"
    return info, None


def _device() -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo("dev")
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    return info, None


ATTACKS = {
    "dot-dot": ([_file("config.json"), _file("../../evil.sh")], "climbs out"),
    "absolute": ([_file("config.json"), _file("/etc/cron.d/evil")], "absolute"),
    "nested dot-dot": ([_file("config.json"), _file("sub/../../x")], "climbs out"),
    "symlink": ([_symlink()], "links are not allowed"),
    "hardlink": ([_file("config.json"), _hardlink()], "links are not allowed"),
    "device": ([_file("config.json"), _device()], "not a regular file"),
    "duplicate": ([_file("config.json"), _file("config.json", b"y")], "twice"),
    "backslash": ([_file("config.json"), _file("..\\..\\evil")], "backslash"),
    "hidden": ([_file("config.json"), _file(".ssh/authorized_keys")], "not a plain file name"),
}


@pytest.mark.parametrize("case", sorted(ATTACKS))
def test_unsafe_archives_are_refused_and_leave_nothing(tmp_path: Path, case: str) -> None:
    members, message = ATTACKS[case]
    artifact = _tar(tmp_path / "model.tar", members)
    with pytest.raises(OtaRejectedError) as err:
        prepare_archive(1 << 30)(artifact, _manifest(artifact))
    assert err.value.reason is Reason.BAD_ARCHIVE
    assert message in err.value.detail
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tar"]
    assert not (tmp_path.parent / "evil.sh").exists()


def test_size_cap_counts_written_bytes(tmp_path: Path) -> None:
    artifact = _tar(tmp_path / "model.tar", [_file("config.json", b"a" * 5000)])
    with pytest.raises(OtaRejectedError, match="size cap") as err:
        prepare_archive(4096)(artifact, _manifest(artifact))
    assert err.value.reason is Reason.BAD_ARCHIVE
    assert not (tmp_path / UNPACKED).exists()


def test_compressed_and_garbage_archives_are_refused(tmp_path: Path) -> None:
    gz = tmp_path / "gz" / "model.tar"
    gz.parent.mkdir()
    with tarfile.open(gz, "w:gz") as tar:  # a decompression bomb would hide in here
        info, data = _file("config.json", b"{}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    junk = tmp_path / "junk" / "model.tar"
    junk.parent.mkdir()
    junk.write_bytes(b"\x00garbage" * 100)
    for path in (gz, junk):
        with pytest.raises(OtaRejectedError) as err:
            prepare_archive(1 << 30)(path, _manifest(path))
        assert err.value.reason is Reason.BAD_ARCHIVE


def test_onnx_with_external_data_inside_is_refused(tmp_path: Path) -> None:
    src = _model_dir(tmp_path)
    external_data_model(src / "encoder.onnx", location="../../etc/passwd")
    artifact = tmp_path / "v" / "model.tar"
    artifact.parent.mkdir()
    pack(src, artifact)
    with pytest.raises(OtaRejectedError, match="external") as err:
        prepare_archive(1 << 30)(artifact, _manifest(artifact))
    assert err.value.reason is Reason.BAD_ARCHIVE
    assert not (artifact.parent / UNPACKED).exists()


def test_good_archive_unpacks_beside_it(tmp_path: Path) -> None:
    src = _model_dir(tmp_path)
    artifact = tmp_path / "v" / "model.tar"
    artifact.parent.mkdir()
    pack(src, artifact)
    prepare_archive(1 << 30)(artifact, _manifest(artifact))
    assert model_dir_of(artifact) == artifact.parent / UNPACKED
    assert tree_sha256(artifact.parent / UNPACKED) == tree_sha256(src)
    assert model_dir_of(src) == src  # a configured directory loads as it is
