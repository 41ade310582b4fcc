"""The layers (DESIGN.md): `salora` (the method) imports neither the runner nor the tasks, `tasks`
never imports the runner, and no two modules import each other, not even through an import inside a
function (only type-checking imports are exempt)."""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGES = ("salora", "salora_cli", "tasks")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _imports(path: Path) -> set[str]:
    """Modules named by the imports in `path`, wherever they are, except under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for node in ast.walk(tree)
                   if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for n in ast.walk(node)}
    names = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def test_the_library_imports_neither_runner_nor_tasks():
    bad = {(a, b) for a, targets in _graph().items() if a.split(".")[0] == "salora"
           for b in targets if b.split(".")[0] != "salora"}
    assert not bad


def test_tasks_never_import_the_runner():
    bad = {(a, b) for a, targets in _graph().items() if a.split(".")[0] == "tasks"
           for b in targets if b.split(".")[0] == "salora_cli"}
    assert not bad


def test_no_import_cycle():
    # a package and its own submodules (the package's __init__ re-exporting them) are not a cycle
    edges = {a: {b for b in targets if not a.startswith(b + ".") and not b.startswith(a + ".")}
             for a, targets in _graph().items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert not cycles, cycles
