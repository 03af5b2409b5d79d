"""`edge-gateway dataset`: `review` (through the server's admin API, see
`agent.gateway.cli_review`) and `build` (local: reads the data folder and the review table,
works with or without a running server; see `agent.gateway.dataset_build`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from agent.cli_common import (
    click_errors,
    gap_option,
    min_change_option,
    out_option,
    shown_option,
    val_fraction_option,
)
from agent.gateway.cli_common import config_of
from agent.gateway.cli_review import filter_body, filter_options, review_group


@click.group("dataset")
def dataset_group() -> None:
    """Review hard frames from the intake and build training datasets from them."""


dataset_group.add_command(review_group)


class ProgressLine:
    """Progress on stderr: at most one line a second per phase, and the end of each phase."""

    def __init__(self, every_s: float = 1.0) -> None:
        self.every_s = every_s
        self._last = 0.0

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - self._last >= self.every_s:
            self._last = now
            click.echo(f"{phase}: {done}/{total}", err=True)


@dataset_group.command("build")
@click.argument("name")
@shown_option(
    "--from",
    "source",
    type=click.Choice(["intake"]),
    default="intake",
    help="Where the reviewed images come from.",
)
@filter_options
@click.option(
    "--base",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="An Ultralytics dataset to include (e.g. made by `edge-agent label`).",
)
@out_option("Dataset folder (a rebuild keeps its gate set and bumps the version).", short=False)
@gap_option(
    2.0, "Seconds: frames of one camera closer than this never end up on both sides of a split."
)
@val_fraction_option()
@min_change_option(
    "Near-duplicates: drop an intake frame whose 64x48 grey thumbnail differs from "
    "the camera's last kept one by less than this (0..255), as `edge-agent label`."
)
@shown_option(
    "--grow-gate",
    default=0,
    type=click.IntRange(min=0),
    help="Move N more images into the held-out gate set (never trained on).",
)
@shown_option(
    "--task",
    type=click.Choice(["detect", "segment"]),
    default="detect",
    help="Label kind: detect (boxes; polygons become their boxes) or segment (Ultralytics "
    "polygons only; images with box labels are left out and counted).",
)
@click.pass_context
def dataset_build(
    ctx: click.Context,
    name: str,
    source: str,
    base: Path | None,
    out: Path,
    gap_s: float,
    val_fraction: float,
    min_change: float,
    grow_gate: int,
    task: str,
    **flt: Any,
) -> None:
    """Build dataset NAME in OUT from accepted and relabelled intake items (and --base)."""
    from agent.gateway.dataset_build import BuildOptions, build_dataset
    from agent.gateway.dataset_plan import BuildError
    from agent.gateway.db import Store
    from agent.gateway.review import USABLE, ReviewFilter
    from agent.gateway.review_store import ReviewStore

    cfg = config_of(ctx)
    body = filter_body(**flt)
    body.pop("all", None)
    try:
        rf = ReviewFilter.model_validate(body)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    started = time.monotonic()
    with Store(cfg.db_path) as store:
        rows = [r for r in ReviewStore(store, cfg.intake_dir).items(rf) if r.status in USABLE]
    text = " ".join(f"{k}={v}" for k, v in body.items()) or "all"
    opts = BuildOptions(
        name,
        out,
        base,
        gap_s,
        val_fraction,
        min_change,
        grow_gate,
        f"{source}: {text}, accepted+relabelled",
        task,
    )
    with click_errors(BuildError):
        m = build_dataset(opts, rows, cfg.intake_dir, ProgressLine())
    s = m.splits
    click.echo(
        f"built {m.name} v{m.version} in {out}: train {s['train'].images}, val {s['val'].images}, "
        f"gate {s['gate'].images} images; classes {', '.join(m.classes) or 'none'}; "
        f"dropped {m.dropped or 'none'}; gate sha256 {m.gate_sha256[:16]}; "
        f"{time.monotonic() - started:.1f} s"
    )
    sys.stdout.flush()
