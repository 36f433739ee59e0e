"""The package layout's contract (docs/architecture.md): one-way layers, no import cycle.

Layers, top to bottom: cli -> web -> sim -> dispatch -> (solver, check) ->
(queue, inventory, runners) -> snapshots -> the core (the modules directly
in `optialloc/`). A module may import its own package and any lower layer;
packages of one layer are independent of each other (the validator in
`check` never borrows from `solver`: that is what makes it a check). Every
import counts, also one inside a function or under `TYPE_CHECKING`: a lazy
import hides a dependency, it does not remove it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "optialloc"

#: package -> layer (higher may import lower); the core is every top-level module.
LAYERS = {
    "core": 0,
    "snapshots": 1,
    "queue": 2,
    "inventory": 2,
    "runners": 2,
    "solver": 3,
    "check": 3,
    "dispatch": 4,
    "sim": 5,
    "web": 6,
    "cli": 7,
    "__main__": 8,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The optialloc modules `path` imports (a `from pkg import mod` names the module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("optialloc"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if not node.module.startswith("optialloc"):
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return {m for m in found if m in modules}


def _package_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "core"  # optialloc/__init__.py
    if parts[1] == "__main__":
        return "__main__"
    if len(parts) == 2 and parts[1] not in LAYERS:
        return "core"
    return parts[1]


def _graph() -> nx.DiGraph:
    modules = _modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        for target in _imports(path, modules):
            if target != name:
                graph.add_edge(name, target)
    return graph


def test_every_package_has_a_layer() -> None:
    unknown = {_package_of(m) for m in _modules()} - set(LAYERS)
    assert not unknown, f"packages with no layer in LAYERS (add them, and to docs): {unknown}"


def test_nothing_imports_upward_or_sideways() -> None:
    wrong = []
    for source, target in _graph().edges:
        src, dst = _package_of(source), _package_of(target)
        if src == dst:
            continue
        if LAYERS[dst] >= LAYERS[src]:
            wrong.append(f"{source} ({src}) imports {target} ({dst})")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_no_import_cycle() -> None:
    graph = _graph()
    # Importing a submodule imports its package's __init__ first; those
    # parent edges are how Python works, not dependencies the code chose.
    cycles = [c for c in nx.simple_cycles(graph) if len(c) > 1]
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles[:5])


@pytest.mark.parametrize(
    ("source", "target", "allowed"),
    [
        ("optialloc.cli.plan", "optialloc.solver", True),
        ("optialloc.solver.model", "optialloc.dispatch.dispatcher", False),
        ("optialloc.check.validator", "optialloc.solver.caps", False),
        ("optialloc.queue.store", "optialloc.queue.body", True),
    ],
)
def test_the_layer_rule_itself(source: str, target: str, allowed: bool) -> None:
    """The checker says no where the layers say no (so the tests above can fail)."""
    src, dst = _package_of(source), _package_of(target)
    assert (src == dst or LAYERS[dst] < LAYERS[src]) is allowed
