"""The layout the architecture promises: small modules, no import cycle, data flowing one way."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("loadgen", "analysis")
MAX_LINES = 460
"""About 450: a module past it does more than one job."""


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Modules of ours that ``path`` imports when it is imported (not inside functions or TYPE_CHECKING)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.parse(path.read_text()).body:
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], base]
                ).strip(".")
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def test_no_module_is_too_long() -> None:
    long = {
        name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_no_import_cycle() -> None:
    modules = _modules()
    graph = {name: _imports(path, name, set(modules)) for name, path in modules.items()}
    for name in graph:  # importing a module imports its packages first: not a cycle of ours
        graph[name] -= {p for p in graph if name.startswith(p + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_data_flows_one_way() -> None:
    """Settings import nothing downstream; the engine never imports storage, analysis or front-ends."""
    modules = _modules()
    graph = {name: _imports(path, name, set(modules)) for name, path in modules.items()}
    rules = {
        "loadgen.config": (
            "loadgen.engine",
            "loadgen.results",
            "loadgen.storage",
            "analysis",
            "loadgen.commands",
        ),
        "loadgen.engine": ("loadgen.storage", "analysis", "loadgen.commands", "loadgen.cli", "loadgen.plans"),
        "loadgen.storage": ("loadgen.engine", "analysis", "loadgen.commands", "loadgen.cli"),
        "analysis": ("loadgen.engine", "loadgen.commands", "loadgen.cli", "loadgen.runner", "loadgen.launch"),
        "loadgen.plans": ("loadgen.commands", "loadgen.cli"),
    }
    wrong = [
        f"{name} imports {target}"
        for name, targets in graph.items()
        for layer, forbidden in rules.items()
        if name == layer or name.startswith(layer + ".")
        for target in targets
        if any(target == f or target.startswith(f + ".") for f in forbidden)
    ]
    assert wrong == []


def test_every_package_is_installed() -> None:
    """A package missing from pyproject works in an editable install and breaks a real one."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {
        ".".join(path.parent.relative_to(REPO).parts)
        for package in PACKAGES
        for path in (REPO / package).rglob("__init__.py")
    }
    assert packages - listed == set()
