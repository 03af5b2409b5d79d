"""The walls between packages hold: a static walk of every import in `agent/` (module level and
inside functions, `if TYPE_CHECKING:` blocks excluded), followed transitively inside `agent`.

Each rule names a package (or module) and what it must never reach, directly or through another
`agent` module. A violation prints the chain of imports that breaks the wall.
"""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
AGENT = REPO / "agent"

HEAVY = ("torch", "onnxruntime", "cv2", "tensorrt", "pycuda", "ultralytics")
STDLIB_IO = ("os", "io", "socket", "subprocess", "sqlite3", "shutil", "threading", "urllib", "http")

# (who, forbidden prefixes: `agent.x` modules or top-level third-party names)
WALLS: list[tuple[str, tuple[str, ...]]] = [
    (
        "agent.gateway",
        ("agent.engines", "agent.fallback", "agent.sources", "agent.publish", "agent.pipeline")
        + ("agent.ota",)
        + ("agent.daemon",)
        + HEAVY,
    ),
    ("agent.publish", ("agent.engines", "agent.ota", "agent.fallback", "agent.config") + HEAVY),
    # what both sides share: keys, signatures, TLS, the untrusted-model check
    ("agent.trust", ("agent.ota", "agent.gateway", "agent.publish", "agent.engines") + HEAVY),
    # cv2 is allowed there for its pure image ops (resize); no file, socket or camera I/O
    ("agent.engines.yolo", ("agent.sources", "agent.publish", "agent.ota") + STDLIB_IO),
]

# contracts may import the standard library, pydantic and agent.util (itself stdlib + pydantic)
CONTRACTS_ALLOWED_THIRD_PARTY = ("pydantic", "pydantic_core", "typing_extensions")


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports at run time (absolute names; relative ones resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: set[str] = set()
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        for child in ast.iter_child_nodes(node):
            if _type_checking_block(child):
                continue
            if isinstance(child, ast.Import):
                out.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                out.add(base)
                out.update(f"{base}.{a.name}" for a in child.names)
            todo.append(child)
    return out


def graph() -> dict[str, set[str]]:
    """module -> the modules it imports (agent modules resolved to files that exist)."""
    modules = {module_name(p): p for p in AGENT.rglob("*.py")}
    g: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for imp in imports_of(path):
            if imp.startswith("agent"):
                if imp in modules:
                    deps.add(imp)
                elif imp.rpartition(".")[0] in modules:  # `from pkg.mod import name`
                    deps.add(imp.rpartition(".")[0])
            else:
                deps.add(imp.split(".")[0])
        g[name] = deps
    return g


GRAPH = graph()


def chain_to(start: str, forbidden: tuple[str, ...]) -> list[str] | None:
    """The shortest import chain from `start` to a forbidden module, or None."""
    seen = {start: [start]}
    queue = deque([start])
    while queue:
        mod = queue.popleft()
        for dep in sorted(GRAPH.get(mod, ())):
            if dep in seen:
                continue
            path = [*seen[mod], dep]
            if any(dep == f or dep.startswith(f + ".") for f in forbidden):
                return path
            seen[dep] = path
            if dep in GRAPH:
                queue.append(dep)
    return None


def members(prefix: str) -> list[str]:
    return sorted(m for m in GRAPH if m == prefix or m.startswith(prefix + "."))


@pytest.mark.parametrize(("who", "forbidden"), WALLS, ids=[w for w, _ in WALLS])
def test_wall(who: str, forbidden: tuple[str, ...]) -> None:
    """No module of `who` reaches a forbidden package, directly or transitively."""
    assert members(who), f"{who} has no modules: the rule is stale"
    broken = [c for m in members(who) if (c := chain_to(m, forbidden)) is not None]
    assert broken == [], "\n".join(" -> ".join(c) for c in broken)


def test_contracts_import_only_pydantic_and_the_standard_library() -> None:
    """agent.contracts depends on nothing of the device or the gateway, and no third party but
    pydantic: both sides can depend on it."""
    import sys

    allowed_agent = ("agent.contracts", "agent.util")
    bad: list[str] = []
    for m in members("agent.contracts") + members("agent.util"):
        for dep in GRAPH[m]:
            if dep.startswith("agent"):
                ok = any(dep == a or dep.startswith(a + ".") for a in allowed_agent)
            else:
                ok = dep in sys.stdlib_module_names or dep in CONTRACTS_ALLOWED_THIRD_PARTY
            if not ok and dep != "__future__":
                bad.append(f"{m} -> {dep}")
    assert bad == []


def test_the_walk_sees_a_known_import() -> None:
    """The graph is real: the archive is known to import the ack contract."""
    assert "agent.contracts.ack" in GRAPH["agent.gateway.archive"]
