"""The layout CONTRIBUTING.md describes, checked: the mapper's engine is usable without Singer, its
imports run only downward, and no package of the repository has an import cycle.

Imports are read from the source (every `import`, also inside functions and under
`if TYPE_CHECKING:`), so a cycle hidden in a lazy import still counts.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "cio_sandbox": ROOT / "sandbox" / "cio_sandbox",
    "tap_customerio_people": ROOT / "tap-customerio-people" / "tap_customerio_people",
    "mapper_emailverify": ROOT / "mapper-emailverify" / "mapper_emailverify",
    "target_customerio_ev": ROOT / "target-customerio-ev" / "target_customerio_ev",
}
ENGINE = "mapper_emailverify.engine"


def modules(package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of `package` (packages by their __init__)."""
    root = PACKAGES[package]
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(module: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """(imported module of the same package, line) for every import statement in `path`."""
    is_package = path.name == "__init__.py"
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                parent = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                parent = node.module or ""
            # `from pkg import name`: the submodule pkg.name when there is one, else pkg itself.
            names = [
                f"{parent}.{alias.name}" if f"{parent}.{alias.name}" in known else parent
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            if name in known:
                yield name, node.lineno


def graph(package: str) -> dict[str, dict[str, int]]:
    known = modules(package)
    edges: dict[str, dict[str, int]] = {name: {} for name in known}
    for name, path in known.items():
        for target, line in imports_of(name, path, known):
            if target != name:
                edges[name].setdefault(target, line)
    return edges


def cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_cycles(package: str) -> None:
    edges = graph(package)
    problems = []
    for component in cycles(edges):
        members = set(component)
        links = [
            f"{source} -> {target} (line {line})"
            for source in component
            for target, line in edges[source].items()
            if target in members
        ]
        problems.append("; ".join(links))
    assert not problems, "import cycles:\n" + "\n".join(problems)


def test_mapper_imports_run_only_downward() -> None:
    """stream_map/ and cli.py over engine/ over taxonomy.py; never the other way."""
    edges = graph("mapper_emailverify")
    upward = []
    for source, targets in edges.items():
        for target, line in targets.items():
            if source.startswith(ENGINE) and not (
                target.startswith(ENGINE) or target == "mapper_emailverify.taxonomy"
            ):
                upward.append(f"{source} imports {target} (line {line})")
            if source == "mapper_emailverify.taxonomy":
                upward.append(f"taxonomy imports {target} (line {line}): it is the bottom floor")
            if source == "mapper_emailverify.cli" and target.startswith(
                "mapper_emailverify.stream_map"
            ):
                upward.append(f"cli imports {target} (line {line}): the CLI sits on the engine")
    assert not upward, "\n".join(upward)


def test_engine_is_usable_without_singer() -> None:
    """Every engine module imports in a fresh interpreter without loading singer_sdk or
    stream_map: the README's "usable without Singer" is a checked fact."""
    engine_modules = sorted(
        name for name in modules("mapper_emailverify") if name.startswith(ENGINE)
    )
    assert len(engine_modules) > 10
    script = (
        "import importlib, json, sys\n"
        f"for name in {engine_modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'singer_sdk'\n"
        "    or m.startswith(('mapper_emailverify.stream_map', 'mapper_emailverify.cli')))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    loaded = json.loads(done.stdout)
    assert loaded == [], f"importing the engine loaded {loaded[:10]}"
