"""The sandbox package has no import cycle, and its leaf modules import nothing from it.

Every import counts: at the top of a module, inside a function, or under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "cio_sandbox"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE
LEAVES = ("loopback", "world_data")


def _modules() -> dict[str, Path]:
    return {path.stem: path for path in sorted(PACKAGE_DIR.glob("*.py"))}


def _imported(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports, relative or absolute, wherever the import is."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == PACKAGE:
                    found.add(parts[1] if len(parts) > 1 else "__init__")
        elif isinstance(node, ast.ImportFrom):
            if node.level > 1:
                raise AssertionError(f"{path.name}: imports from above the package")
            if node.level == 1:
                base = node.module
            elif node.module is not None and node.module.split(".")[0] == PACKAGE:
                base = node.module.partition(".")[2] or None
            else:
                continue
            if base is None:  # ``from . import x`` or ``from cio_sandbox import x``
                found |= {a.name if a.name in modules else "__init__" for a in node.names}
            else:
                found.add(base.split(".")[0])
    return found & (modules | {"__init__"})


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    names = set(modules)
    return {name: _imported(path, names) - {name} for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One path per strongly connected component larger than a module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_graph_sees_the_imports_it_should() -> None:
    graph = _graph()
    assert "world" in graph["sandbox"]
    assert "world" in graph["smtp_server"]


def test_no_import_cycle_in_the_package() -> None:
    assert _cycles(_graph()) == []


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaf_modules_import_nothing_from_the_package(leaf: str) -> None:
    assert _graph()[leaf] == set()
