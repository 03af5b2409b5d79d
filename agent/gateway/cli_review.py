"""`edge-gateway dataset review`: list, accept, reject, relabel intake items, through the
running server's admin API (`GatewayClient`); the server owns the review state."""

from __future__ import annotations

import functools
import getpass
import json
from collections.abc import Callable
from typing import Any

import click

from agent.cli_common import shown_option
from agent.gateway.cli_common import client_of

STATUSES = ("pending", "accepted", "rejected", "relabelled")


def filter_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--device, --camera, --day, --class, --ids, --all: which items a command covers."""
    options = [
        click.option("--device", help="Only this device's items."),
        click.option("--camera", help="Only this camera's items."),
        click.option("--day", help="Only items uploaded on this UTC day (YYYY-MM-DD)."),
        click.option("--class", "class_name", help="Only items with a box of this class."),
        click.option("--ids", multiple=True, help="Only these item ids (repeat or a,b,c)."),
        click.option("--all", "all_", is_flag=True, help="Confirm: every item (no filter)."),
    ]
    return functools.reduce(lambda f, opt: opt(f), reversed(options), func)


def filter_body(
    device: str | None,
    camera: str | None,
    day: str | None,
    class_name: str | None,
    ids: tuple[str, ...],
    all_: bool,
    status: str | None = None,
) -> dict[str, Any]:
    """The API's filter object from the command-line options."""
    flat = [i for chunk in ids for i in chunk.split(",") if i]
    body: dict[str, Any] = {
        "device": device,
        "camera": camera,
        "day": day,
        "class": class_name,
        "status": status,
        "ids": flat or None,
        "all": all_,
    }
    return {k: v for k, v in body.items() if v not in (None, False)}


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "admin"


@click.group("review")
def review_group() -> None:
    """Review hard frames in the intake: every item is pending, accepted, rejected or
    relabelled; only accepted and relabelled items go into `dataset build`."""


@review_group.command("list")
@filter_options
@click.option("--status", type=click.Choice(STATUSES), help="Only items in this status.")
@shown_option("--limit", default=50, type=click.IntRange(0, 1000))
@click.option("--offset", default=0, type=click.IntRange(min=0))
@click.option("--json", "as_json", is_flag=True, help="JSON output (the API's answer).")
@click.pass_context
def review_list(
    ctx: click.Context, status: str | None, limit: int, offset: int, as_json: bool, **flt: Any
) -> None:
    """Items matching the filters, oldest first, and how many there are per status."""
    body = filter_body(**flt, status=status)
    body.pop("all", None)
    with client_of(ctx) as client:
        answer = client.review_items(body, limit, offset)
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    counts = answer["counts"]
    click.echo("  ".join(f"{s} {counts.get(s, 0)}" for s in STATUSES))
    for item in answer["items"]:
        names = ",".join(item["class_names"][:6])
        click.echo(
            f"{item['id']}  {item['status']:10}  {item['device']}/{item['camera']}  "
            f"{item['day']}  {item['stem']}  {item['boxes']} boxes  [{names}]"
        )
    shown = len(answer["items"])
    if answer["total"] > offset + shown:
        click.echo(f"... {answer['total'] - offset - shown} more (--offset {offset + shown})")


def _act(
    ctx: click.Context,
    action: str,
    flt: dict[str, Any],
    reason: str | None,
    edit: dict[str, Any] | None = None,
) -> None:
    body: dict[str, Any] = {"filter": filter_body(**flt), "by": _who(), "reason": reason}
    if edit is not None:
        body["edit"] = edit
    if not (set(body["filter"]) - {"status"}):
        raise click.UsageError(
            f"refusing to {action} every item: give --device, --camera, --day, --class, "
            "--ids, or --all"
        )
    with client_of(ctx) as client:
        answer = client.review_action(action, body)
    click.echo(f"{action}: {answer['changed']} changed, {answer['unchanged']} unchanged")


reason_option = click.option("--reason", help="Why (kept with the item).")


def _decision(action: str, help_text: str) -> click.Command:
    """`review accept|reject`: the filters and a reason, nothing else."""

    @filter_options
    @reason_option
    @click.pass_context
    def decide(ctx: click.Context, reason: str | None, **flt: Any) -> None:
        _act(ctx, action, flt, reason)

    return review_group.command(action, help=help_text)(decide)


review_accept = _decision(
    "accept", "Accept the items matching the filters (they go into the next build)."
)
review_reject = _decision(
    "reject", "Reject the items matching the filters (left out of every build, files kept)."
)


def _box_changes(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        index, sep, cls = v.partition("=")
        if not sep or not index.strip().isdigit() or not cls.strip():
            raise click.BadParameter(f"{v!r}: expected INDEX=CLASS, e.g. 0=car", param_hint="--box")
        out[str(int(index))] = cls.strip()
    return out


@review_group.command("relabel")
@filter_options
@click.option(
    "--box",
    "boxes",
    multiple=True,
    metavar="INDEX=CLASS",
    help="Set box INDEX (0-based, as listed by `show`) to CLASS (name or id).",
)
@click.option(
    "--delete",
    "deletes",
    multiple=True,
    type=click.IntRange(min=0),
    metavar="INDEX",
    help="Delete box INDEX.",
)
@reason_option
@click.pass_context
def review_relabel(
    ctx: click.Context,
    boxes: tuple[str, ...],
    deletes: tuple[int, ...],
    reason: str | None,
    **flt: Any,
) -> None:
    """Change class ids of boxes (and delete boxes) of the items matching the filters; the
    teacher's original labels stay in each item's sidecar."""
    if not boxes and not deletes:
        raise click.UsageError("relabel needs --box INDEX=CLASS and/or --delete INDEX")
    _act(ctx, "relabel", flt, reason, {"boxes": _box_changes(boxes), "delete": list(deletes)})


@review_group.command("show")
@click.argument("item_id")
@click.option(
    "--image",
    "image_out",
    type=click.Path(dir_okay=False),
    help="Also save the item's JPEG to this file.",
)
@click.pass_context
def review_show(ctx: click.Context, item_id: str, image_out: str | None) -> None:
    """One item: status, boxes by index (for `relabel --box`), the teacher's original."""
    with client_of(ctx) as client:
        item = client.review_item(item_id)
        image = client.review_image(item_id) if image_out else b""
    if image_out:
        with open(image_out, "wb") as f:
            f.write(image)
    names = item["class_names"]
    click.echo(
        f"{item['id']}  {item['status']}  {item['device']}/{item['camera']}/"
        f"{item['day']}/{item['stem']}"
    )
    for box in item["boxes_list"]:
        cid = box["class_id"]
        name = names[cid] if cid < len(names) else "?"
        click.echo(f"  box {box['index']}: {cid} ({name})  {' '.join(map(str, box['xywh']))}")
    if item["original_labels"] is not None:
        click.echo("teacher's original labels:\n" + item["original_labels"].rstrip())
