"""The gate figures a rollout view shows (pure: signed manifests in, view out) and the
gate options of `models sign` that must go together."""

from __future__ import annotations

from typing import Any

from click.testing import CliRunner

from agent.contracts.gate import Figures, GateRecord, ModelRef
from agent.gateway.gate_view import gate_lines, rollout_gate

SET_A, SET_B = "a" * 64, "b" * 64


def record(gate_set: str, mapv: float, replaces: int | None = None, old: float = 0.0) -> dict:
    return GateRecord(
        gate_set_sha256=gate_set, split="gate", images=5, boxes=20, evaluator="e",
        figures=Figures(map50=0.9, map50_95=mapv, ap50_95={"person": mapv}),
        replaces=None if replaces is None else ModelRef(name="m", version=replaces,
                                                         sha256="c" * 64),
        replaces_figures=None if replaces is None else Figures(
            map50=0.9, map50_95=old, ap50_95={"person": old}),
        margin=0.01, class_margin=0.05,
    ).model_dump(mode="json")  # fmt: skip


def test_replaced_figures_from_the_candidates_record_or_its_own() -> None:
    """v1 has no record: its figures come from v3's record (it names v1); v2's own record is
    on the same gate set and worse by the margin: shown as a problem. No record: None."""
    manifests: dict[str, Any] = {
        "m@1": {},
        "m@2": {"gate": record(SET_A, 0.60)},
        "m@3": {"gate": record(SET_A, 0.50, replaces=1, old=0.45)},
    }
    view = rollout_gate(manifests["m@3"], ["m@1", "m@2", "m@1"], manifests.get)
    assert view is not None
    assert view["replaces"]["m@1"]["map50_95"] == 0.45
    assert view["replaces"]["m@2"]["map50_95"] == 0.60
    assert [p.split(":")[0] for p in view["problems"]] == ["vs m@2", "vs m@2"]
    text = "\n".join(gate_lines(view, "m@3"))
    assert "replaces m@1: mAP50-95 0.450" in text and "WORSE vs m@2" in text
    assert rollout_gate({}, ["m@1"], manifests.get) is None
    assert "no signed gate figures" in gate_lines(None, "m@4")[0]


def test_figures_on_another_gate_set_are_not_compared() -> None:
    manifests = {"m@2": {"gate": record(SET_B, 0.90)}, "m@3": {"gate": record(SET_A, 0.5)}}
    view = rollout_gate(manifests["m@3"], ["m@2"], manifests.get)
    assert view is not None and view["replaces"] == {"m@2": None} and view["problems"] == []


def test_sign_gate_options_go_together(tmp_path) -> None:
    from agent.gateway.cli import main
    from tests.gateway.conftest import DEMO_MODEL

    (tmp_path / "k").write_text("x")
    result = CliRunner().invoke(
        main,
        ["models", "sign", str(DEMO_MODEL), "--release-key", str(tmp_path / "k"), "--out",
         str(tmp_path / "m.json"), "--name", "m", "--version", "2",
         "--gate-data", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code != 0 and "--gate-against and --gate-data go together" in result.output
