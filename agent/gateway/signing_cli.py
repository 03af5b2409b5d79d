"""`edge-gateway keys init|export` and `models sign|import`: the release key off the gateway.

Two machines (docs/gateway.md):

* the **workstation** holds the release key: `keys init --release-only --out PATH` makes it,
  `models sign FILE ... --release-key PATH --out MANIFEST` writes a signed manifest. Neither
  needs a gateway, its config or its state;
* the **gateway** holds only its gateway key (`keys init --gateway-only`) and trusts the
  release public key from its config (`trust.release_keys`): `models import FILE --manifest
  MANIFEST` verifies the signature, the file's sha256 and length, and registers it.

`models add` (in `agent.gateway.cli`) still signs on the gateway, for a single-box lab;
`model_options` and `release_options` give it the same model, expiry, generation and kind
options as `models sign`.
`register` adds these commands to the click groups of `agent.gateway.cli`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from agent.cli_common import EXISTING_FILE, click_errors, out_option, shown_option
from agent.gateway.cli_common import config_of

DEFAULT_EXPIRES_DAYS = 365.0
"""Manifests expire by default; a device refuses an expired manifest (`expired_manifest`)."""

F = TypeVar("F", bound=Callable[..., Any])


def release_options(fn: F) -> F:
    """--expires-days (default 365), --generation and --kind, shared by `models sign`/`add`."""
    fn = shown_option(
        "--kind",
        type=click.Choice(["detector", "florence2"]),
        default="detector",
        help="What the model is for; each kind has its own generation line.",
    )(fn)
    fn = shown_option(
        "--generation",
        type=click.IntRange(min=0),
        default=0,
        help="Release generation, monotonic across the names of one kind: a device accepts "
        "another model name only with a generation above the one it runs.",
    )(fn)
    return shown_option(
        "--expires-days",
        type=click.FloatRange(min=0, min_open=True),
        default=DEFAULT_EXPIRES_DAYS,
        help="The manifest expires this many days after signing.",
    )(fn)


def model_options(labels_help: str) -> Callable[[F], F]:
    """--name, --version, --labels, --imgsz, --min-tensorrt, --gpu-arch: what describes the
    model file, shared by `models sign`/`add` (`labels_help` says where labels default from)."""
    options = (
        click.option(
            "--name", required=True, help="Model name ([a-z0-9-]); versions are per name."
        ),
        click.option(
            "--version", "version", required=True, type=int, help="Integer, above the last."
        ),
        click.option("--labels", default=None, help=labels_help),
        click.option("--imgsz", default=None, help="Input size H,W when the file does not say it."),
        click.option("--min-tensorrt", default=None, help="Engines: lowest TensorRT version."),
        click.option("--gpu-arch", default=None, help="Engines: GPU arch built for, e.g. sm_87."),
    )

    def apply(fn: F) -> F:
        for option in reversed(options):  # the first listed is the outermost, as with @-stacking
            fn = option(fn)
        return fn

    return apply


def parse_size(value: str | None) -> tuple[int, int] | None:
    """`--imgsz`: 'H,W', 'HxW' or one number -> (height, width)."""
    if value is None:
        return None
    try:
        parts = [int(p) for p in value.replace("x", ",").split(",")]
    except ValueError:
        raise click.BadParameter("use H,W (e.g. 320,320) or one number") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) <= 0:
        raise click.BadParameter("use H,W (e.g. 320,320) or one number")
    return parts[0], parts[1]


def parse_compat(min_tensorrt: str | None, gpu_arch: str | None) -> Any:
    """`--min-tensorrt` / `--gpu-arch` -> Compat, or a ClickException naming the option."""
    from pydantic import ValidationError

    from agent.contracts.manifest import Compat

    try:
        return Compat(min_tensorrt=min_tensorrt, gpu_arch=gpu_arch)
    except ValidationError as err:
        option = {"min_tensorrt": "--min-tensorrt", "gpu_arch": "--gpu-arch"}
        raise click.ClickException(
            "; ".join(f"{option[str(e['loc'][0])]}: {e['msg']}" for e in err.errors())
        ) from None


# -- keys ------------------------------------------------------------------------------------


@click.command("init")
@click.option("--gateway-only", is_flag=True, help="Only the gateway key (production gateway).")
@click.option(
    "--release-only",
    is_flag=True,
    help="Only a release key, written to --out (on the workstation; no gateway config needed).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="With --release-only: the release key file to create (mode 0600).",
)
@click.pass_context
def keys_init(ctx: click.Context, gateway_only: bool, release_only: bool, out: Path | None) -> None:
    """Create missing keys (never replaced). Production: --gateway-only on the gateway and
    --release-only --out PATH on the workstation; both at once only for a single-box lab."""
    from agent.gateway.keys import KeyFileError, KeyRole, init_keys

    if gateway_only and release_only:
        raise click.UsageError("--gateway-only and --release-only exclude each other")
    if release_only:
        _init_release(out)
        return
    if out is not None:
        raise click.UsageError("--out goes with --release-only")
    cfg = config_of(ctx)
    roles = (KeyRole.GATEWAY,) if gateway_only else tuple(KeyRole)
    with click_errors(KeyFileError, OSError):
        result = init_keys(cfg.keys_dir, roles)
    for role, (info, created) in result.items():
        click.echo(
            f"{role.value} key {info.key_id}: {'created' if created else 'exists'} "
            f"({cfg.keys_dir / (role.value + '.key')})"
        )
    if not gateway_only:
        click.echo(
            "The release key is on this gateway: fine for a single-box lab. In production keep "
            "it on a workstation (keys init --release-only) and use models sign / models import."
        )
    click.echo("Private keys are never printed; `edge-gateway keys export` prints the public keys.")


def _init_release(out: Path | None) -> None:
    from agent.gateway.keys import KeyFileError, init_release_key

    if out is None:
        raise click.UsageError("--release-only needs --out PATH (the release key file)")
    with click_errors(KeyFileError, OSError):
        info = init_release_key(out)
    click.echo(f"release key {info.key_id}: created ({out}, mode 0600); keep it off the gateway")
    click.echo("Trust it in the gateway config (trust.release_keys) and in each device config")
    click.echo(f"(ota.release_keys):\n    {info.key_id}: {info.public_key}")


@click.command("export")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of YAML.")
@click.pass_context
def keys_export(ctx: click.Context, as_json: bool) -> None:
    """Print the public keys a device config's `ota:` section needs: the gateway key and the
    trusted release keys (trust.release_keys, plus a lab release key in keys_dir)."""
    from agent.gateway.keys import KeyFileError, device_trust, export_yaml

    cfg = config_of(ctx)
    with click_errors(KeyFileError):
        if as_json:
            click.echo(json.dumps(device_trust(cfg.keys_dir, cfg.trust.release_keys), indent=2))
        else:
            click.echo(export_yaml(cfg.keys_dir, cfg.trust.release_keys), nl=False)


GATE_KEYS = ("gate_against", "gate_against_model", "gate_data", "margin", "class_margin")


def gate_options(fn: F) -> F:
    """--gate-against MANIFEST --gate-data DIR [--gate-against-model] [--margin]
    [--class-margin] of `models sign`."""
    from agent.contracts.gate import DEFAULT_CLASS_MARGIN, DEFAULT_MARGIN

    path = click.Path(path_type=Path, exists=True)
    options = (
        click.option("--gate-against", type=path, default=None,
                     help="Manifest (plain or signed) of the model this one replaces."),
        click.option("--gate-against-model", type=path, default=None,
                     help="Its model file (default: the file beside the manifest, by sha256)."),
        click.option("--gate-data", type=path, default=None,
                     help="Gate set: a dataset of `edge-gateway dataset build` or its gate/."),
        shown_option("--margin", type=click.FloatRange(min=0), default=DEFAULT_MARGIN,
                     help="Largest allowed drop of overall mAP50-95."),
        shown_option("--class-margin", type=click.FloatRange(min=0), default=DEFAULT_CLASS_MARGIN,
                     help="Largest allowed drop of a class's AP50-95."),
    )  # fmt: skip
    for option in reversed(options):
        fn = option(fn)
    return fn


def gated(manifest: Any, file: Path, **gate: Any) -> Any:
    """`manifest` with the gate record, after evaluating FILE against the model it replaces;
    ClickException when the gate cannot run or refuses the candidate (both tables printed)."""
    from agent.gateway.gate import GateError, columns, decide, model_beside, read_manifest, run_eval
    from agent.messages.figures import figures_table

    try:
        current = read_manifest(gate["gate_against"])
        model = gate["gate_against_model"] or model_beside(gate["gate_against"], current)
        click.echo(f"gate: evaluating {file} and {model} on {gate['gate_data']}", err=True)
        report = run_eval([file, model], gate["gate_data"])
        record, problems = decide(report, current, gate["margin"], gate["class_margin"])
    except GateError as err:
        raise click.ClickException(f"gate: {err}") from None
    click.echo(
        f"gate set {report.data} ({report.images} images, {report.boxes} boxes, sha256 "
        f"{report.split_sha256[:16]}):\n{figures_table(columns(report))}"
    )
    if problems:
        raise click.ClickException(
            f"gate: refused {manifest.name}@{manifest.version} against {current.name}@"
            f"{current.version}: " + "; ".join(problems)
        )
    click.echo(f"gate: passed (margin {gate['margin']}, class margin {gate['class_margin']})")
    data = manifest.model_dump(mode="json", by_alias=True)
    return type(manifest).model_validate({**data, "gate": record.model_dump(mode="json")})


# -- models ----------------------------------------------------------------------------------


@click.command("sign")
@click.argument("file", type=EXISTING_FILE)
@click.option(
    "--release-key",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The release private key file (keys init --release-only).",
)
@out_option("Where to write the signed manifest (JSON).", short=False, file=True)
@model_options("Class names: 'a,b,c' or a file, one per line.")
@release_options
@gate_options
def models_sign(file: Path, release_key: Path, out: Path, **opts: Any) -> None:
    """Sign FILE's manifest with the release key, on the workstation (no gateway needed).

    With --gate-against and --gate-data, FILE and the model it replaces are evaluated on the
    gate set first (`edge-agent eval`); a candidate worse by the margins is refused, and
    the figures and the gate set's sha256 are signed into the manifest.
    Copy FILE and the manifest to the gateway and run `edge-gateway models import` there.
    """
    gate = {k: opts.pop(k) for k in GATE_KEYS}
    if bool(gate["gate_against"]) != bool(gate["gate_data"]):
        raise click.UsageError("--gate-against and --gate-data go together")
    from agent.gateway.keys import KeyFileError, load_key_file
    from agent.gateway.registry import RegistryError, describe_model
    from agent.trust.ota import sign_manifest
    from agent.util.files import atomic_write_text

    now = time.time()
    with click_errors(RegistryError, KeyFileError, OSError):
        key = load_key_file(release_key)
        manifest = describe_model(file, _request(opts, now), now)
        if gate["gate_against"] or gate["gate_data"]:
            manifest = gated(manifest, file, **gate)
        signed = sign_manifest(manifest, key)
        atomic_write_text(out, signed.model_dump_json(by_alias=True, indent=2) + "\n")
    click.echo(
        f"signed {manifest.name}@{manifest.version} ({manifest.kind}, generation "
        f"{manifest.generation}): {manifest.format}, {manifest.length} bytes, sha256 "
        f"{manifest.sha256}, expires {manifest.expires}, key {signed.key_id} -> {out}"
    )


def _request(opts: dict[str, Any], now: float) -> Any:
    """The ManifestRequest of `models sign` options."""
    from agent.gateway.registry import ManifestRequest, expires_after, parse_labels

    return ManifestRequest(
        name=opts["name"],
        version=opts["version"],
        labels=parse_labels(opts["labels"]) if opts["labels"] else None,
        input_size=parse_size(opts["imgsz"]),
        compat=parse_compat(opts["min_tensorrt"], opts["gpu_arch"]),
        kind=opts["kind"],
        generation=opts["generation"],
        expires=expires_after(opts["expires_days"], now),
    )


@click.command("import")
@click.argument("file", type=EXISTING_FILE)
@click.option(
    "--manifest",
    "manifest_path",
    required=True,
    type=EXISTING_FILE,
    help="The signed manifest written by `models sign`.",
)
@click.pass_context
def models_import(ctx: click.Context, file: Path, manifest_path: Path) -> None:
    """Register FILE, signed on the workstation: the release signature (trust.release_keys),
    expiry, sha256 and length are checked, and the model itself (no external data)."""

    from agent.contracts.ota import SignedManifest
    from agent.gateway.db import Store
    from agent.gateway.registry import RegistryError, import_model

    cfg = config_of(ctx)
    try:
        signed = SignedManifest.from_json(manifest_path.read_bytes())
    except (ValueError, OSError) as err:  # bad JSON or pydantic's ValidationError
        first = " ".join(str(err).splitlines()[:3])
        raise click.ClickException(f"{manifest_path}: not a signed manifest: {first}") from None
    with click_errors(RegistryError):
        with Store(cfg.db_path) as store:
            row = import_model(store, cfg.artifacts_dir, cfg.trust.release_keys, file, signed)
    m = row.manifest
    click.echo(
        f"imported {row.name}@{row.version}: {row.format}, {row.length} bytes, sha256 "
        f"{row.sha256}, signed by {signed.key_id}, expires {m['expires']}"
    )
    if m.get("gate"):
        from agent.gateway.gate import signed_summary

        click.echo(signed_summary(m["gate"]))


def register(keys_group: click.Group, models_group: click.Group) -> None:
    """Add `keys init|export` and `models sign|import` to the `edge-gateway` groups."""
    keys_group.add_command(keys_init)
    keys_group.add_command(keys_export)
    models_group.add_command(models_sign)
    models_group.add_command(models_import)
