"""`dataset build` on disk without a server: a base dataset alone, an interrupted rebuild, an
interrupted gate growth, a tampered gate set, a foreign output folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.gateway.dataset_build import BuildOptions, build_dataset
from agent.gateway.dataset_plan import BuildError
from agent.util.dataset_hash import gate_set_sha256
from tests.gateway.intake_items import make_base


def build(out: Path, base: Path, grow: int = 0) -> object:
    opts = BuildOptions("t", out, base, 10.0, 0.2, 1.0, grow, "intake: none")
    return build_dataset(opts, [], out.parent / "no-intake", lambda *a: None)


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return make_base(tmp_path / "base", ["person", "car"], n_train=3, n_val=3)


def test_base_alone_keeps_its_split_and_grows_the_gate_from_val(tmp_path: Path, base: Path) -> None:
    """Base train stays train; the gate takes base val images only."""
    m = build(tmp_path / "ds", base, grow=2)
    assert m.splits["train"].images == 3 and m.splits["val"].images == 1  # type: ignore[attr-defined]
    assert m.splits["gate"].images == 2  # type: ignore[attr-defined]
    gate_names = {p.name for p in (tmp_path / "ds" / "gate" / "images").iterdir()}
    assert all(n.startswith("base__val__") for n in gate_names)


def test_interrupted_rebuild_and_gate_growth_recover(tmp_path: Path, base: Path) -> None:
    """A rebuild killed midway (manifest set aside, a gate growth without its gate.json) is
    finished by the next build, with the same gate digest and the next version."""
    out = tmp_path / "ds"
    m1 = build(out, base, grow=1)
    digest = gate_set_sha256(out / "gate")
    (out / "dataset.json").replace(out / ".dataset.json.previous")  # killed after the rename
    (out / "gate" / "images" / "base__val__999999.jpg").write_bytes(b"half a growth")
    (out / "gate" / "data.yaml").write_text("names: {}\n")
    m2 = build(out, base)
    assert m2.version == m1.version + 1  # type: ignore[attr-defined]
    assert m2.gate_sha256 == digest == gate_set_sha256(out / "gate")  # type: ignore[attr-defined]
    assert not (out / ".dataset.json.previous").exists()


def test_tampered_gate_and_foreign_folder_refused(tmp_path: Path, base: Path) -> None:
    """A gate file edited by hand stops the build; so does an output folder of other files."""
    out = tmp_path / "ds"
    build(out, base, grow=1)
    label = next((out / "gate" / "labels").iterdir())
    label.write_text("1 0.5 0.5 0.5 0.5\n")
    with pytest.raises(BuildError, match="changed since it was written"):
        build(out, base)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(BuildError, match="not part of a dataset"):
        build(foreign, base)
