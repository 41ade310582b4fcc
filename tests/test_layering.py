"""The layers (DESIGN.md), read from the source with `ast`, nothing imported: every module of salora/, tasks/
and salora_cli/ belongs to one layer, no module imports one of a higher layer, and no import circle joins
two modules, not even through an import inside a function or under `if TYPE_CHECKING:` (an annotation's
import is an arrow too). Lowest first:

    salora                the method as a library
    tasks                 what every task family shares (base, models, metrics, prompts, generation, tables)
    tasks.classification  GLUE, your own files
    tasks.style           Yelp, GYAFC, the style classifier
    tasks.instruct        Alpaca instruction tuning, zero-shot transfer's task side
    salora_cli.core       config, errors, atomic writes, the run folder, the method registry, console
    salora_cli.methods    the five methods
    salora_cli.run        one run: the loop, evaluation, predict
    salora_cli.reports    tables and figures from run folders
    salora_cli.transfer   zero-shot transfer, the style scorers
    salora_cli.grid       reproduce, protocol, plan, dry run, ablations, demo
    salora_cli.cli        the Typer app

A registry that names modules as strings (tasks.BUILTIN, the method registry) is no import; its names are
checked to be modules that exist.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the tree this file is in, whatever sys.path holds
PACKAGES = ("salora", "tasks", "salora_cli")
LAYERS = ("salora", "tasks", "tasks.classification", "tasks.style", "tasks.instruct", "salora_cli.core",
          "salora_cli.methods", "salora_cli.run", "salora_cli.reports", "salora_cli.transfer", "salora_cli.grid",
          "salora_cli.cli")
# the runner's package itself holds only the version; __main__ starts the CLI
PLACED = {"salora_cli": "salora_cli.core", "salora_cli.__main__": "salora_cli.cli"}


def modules(root: Path = ROOT) -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def layer(module: str) -> str | None:
    """The layer a module belongs to: its PLACED entry, else the longest layer name it is in."""
    if module in PLACED:
        return PLACED[module]
    inside = [name for name in LAYERS if module == name or module.startswith(name + ".")]
    return max(inside, key=len) if inside else None


def imports(module: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported module, line) for every import in `path`, wherever it stands. `from x import y` is the
    module x.y when that is a module, else x; relative imports are resolved against `module`."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((sub if sub in known else base, node.lineno))
    return [(name, line) for name, line in found if name in known and name != module]


def graph(root: Path = ROOT) -> dict[str, list[tuple[str, int]]]:
    known = modules(root)
    return {name: imports(name, path, known) for name, path in known.items()}


def upward(edges: dict[str, list[tuple[str, int]]]) -> list[str]:
    rank = {name: i for i, name in enumerate(LAYERS)}
    bad = []
    for a, targets in sorted(edges.items()):
        for b, line in targets:
            la, lb = layer(a), layer(b)
            if la is not None and lb is not None and rank[lb] > rank[la]:
                bad.append(f"{a} (line {line}) imports {b}: layer {la} may not import the higher layer {lb}")
    return bad


def cycles(edges: dict[str, list[tuple[str, int]]]) -> list[str]:
    """Every import circle, as 'a -> b -> a' (one per strongly connected group of modules)."""
    succ = {a: sorted({b for b, _ in targets}) for a, targets in edges.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in succ.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for start in sorted(succ):
        if start not in index:
            visit(start)
    return [" -> ".join(_circle(group, succ)) for group in groups]


def _circle(group: list[str], succ: dict[str, list[str]]) -> list[str]:
    """One circle through the group's first module, found by a breadth-first walk inside the group."""
    start, members = group[0], set(group)
    came_from = {start: None}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in succ[node]:
            if nxt == start:
                path = [node]
                while came_from[path[-1]] is not None:
                    path.append(came_from[path[-1]])
                return list(reversed(path)) + [start]
            if nxt in members and nxt not in came_from:
                came_from[nxt] = node
                queue.append(nxt)
    return group  # not reached: a strongly connected group has a circle through each member


def test_every_module_has_a_layer():
    homeless = [name for name in modules() if layer(name) is None]
    assert not homeless, f"modules in no layer (put each in a sub-package of LAYERS): {homeless}"


def test_no_import_reaches_a_higher_layer():
    bad = upward(graph())
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_no_import_circle():
    found = cycles(graph())
    assert not found, "import circles:\n" + "\n".join(found)


def test_registries_name_modules_that_exist():
    known = modules()

    def strings(path: Path, keep) -> list[str]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and keep(node.value)]

    builtin = strings(ROOT / "tasks" / "__init__.py", lambda v: isinstance(v, str) and v.startswith("tasks."))
    methods = strings(ROOT / "salora_cli" / "core" / "method_registry.py",
                      lambda v: isinstance(v, str) and v.startswith("salora_cli."))
    assert len(builtin) == 5 and len(set(methods)) == 4
    assert [m for m in builtin + methods if m not in known] == []
    assert {layer(m) for m in builtin} == {"tasks.classification", "tasks.style", "tasks.instruct"}
    assert {layer(m) for m in methods} == {"salora_cli.methods"}


def test_the_checks_find_a_circle_and_an_upward_import(tmp_path):
    # a small tree with both faults, reached through the import forms the checks resolve
    files = {
        "salora/__init__.py": "",
        "tasks/__init__.py": "",
        "tasks/base.py": "def get():\n    from tasks.style import style\n",  # shared -> a family, in a function
        "tasks/style/__init__.py": "",
        "tasks/style/style.py": "from ..base import get\n",  # relative: tasks.base
        "salora_cli/__init__.py": "",
        "salora_cli/core/__init__.py": "",
        "salora_cli/core/config.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                     "    from salora_cli.run import train\n",
        "salora_cli/run/__init__.py": "",
        "salora_cli/run/train.py": "import salora_cli.core.config\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    edges = graph(tmp_path)
    assert sorted(upward(edges)) == [
        "salora_cli.core.config (line 3) imports salora_cli.run.train: layer salora_cli.core may not import "
        "the higher layer salora_cli.run",
        "tasks.base (line 2) imports tasks.style.style: layer tasks may not import the higher layer tasks.style"]
    assert sorted(cycles(edges)) == ["salora_cli.core.config -> salora_cli.run.train -> salora_cli.core.config",
                                     "tasks.base -> tasks.style.style -> tasks.base"]
    assert layer("salora_cli.flat_module") is None  # a module outside the sub-packages has no layer
