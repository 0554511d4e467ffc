"""The package's shape: no import cycle (typing-only imports count), SDK overrides declared, every
setting's default declared once, in the schema."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
import tap_customerio_people
from singer_sdk import RESTStream, Tap
from singer_sdk.pagination import OffsetPaginator
from tap_customerio_people import client, settings, streams, tap

PACKAGE = Path(tap_customerio_people.__file__).parent
NAME = PACKAGE.name


def imports_of(path: Path) -> set[str]:
    """The package's own modules that ``path`` imports, anywhere (under TYPE_CHECKING too)."""
    module = f"{NAME}.{path.stem}"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.rsplit(".", node.level)[0]
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            # `from . import errors` names modules, not attributes.
            found |= {f"{target}.{alias.name}" for alias in node.names}
    modules = {f"{NAME}.{p.stem}" for p in PACKAGE.glob("*.py")}
    return {name for name in found if name in modules and name != module}


def test_no_import_cycles() -> None:
    graph = {f"{NAME}.{p.stem}": imports_of(p) for p in PACKAGE.glob("*.py")}
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            cycle = [*path[path.index(node) :], node]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if node in done:
            return
        for child in sorted(graph[node]):
            visit(child, [*path, node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])


def _overrides(cls: type, bases: tuple[type, ...]) -> list[str]:
    """Methods and properties ``cls`` defines that one of ``bases`` (an SDK class) defines too."""
    names = []
    for name, member in vars(cls).items():
        if name.startswith("__") or not any(hasattr(base, name) for base in bases):
            continue
        callable_member = isinstance(member, property | staticmethod | classmethod)
        if callable_member or inspect.isfunction(member) or hasattr(member, "func"):
            names.append(name)  # hasattr(member, "func"): a functools.cached_property
    return names


@pytest.mark.parametrize(
    ("cls", "bases"),
    [
        (tap.TapCustomerIOPeople, (Tap,)),
        (client.CustomerIOStream, (RESTStream,)),
        (streams.PeopleStream, (RESTStream,)),
        (streams.SegmentsStream, (RESTStream,)),
        (streams.SuppressionsStream, (RESTStream,)),
        (streams.SuppressionOffsetPaginator, (OffsetPaginator,)),
    ],
)
def test_every_sdk_override_is_declared(cls: type, bases: tuple[type, ...]) -> None:
    undeclared = []
    for name in _overrides(cls, bases):
        member = vars(cls)[name]
        function = (
            getattr(member, "fget", None)  # property
            or getattr(member, "func", None)  # functools.cached_property
            or getattr(member, "__func__", None)  # classmethod
            or member
        )
        if not getattr(function, "__override__", False):
            undeclared.append(name)
    assert undeclared == [], f"{cls.__name__} overrides without @override: {undeclared}"


def test_defaults_are_declared_only_in_the_schema() -> None:
    """No ``config.get(name, default)`` and no ``or <literal>`` after a setting anywhere."""
    names = set(settings.PROPERTIES)
    offenders = []
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value in names
                and len(node.args) > 1
            ):
                offenders.append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
                first, *rest = node.values
                reads_setting = (
                    isinstance(first, ast.Call)
                    and isinstance(first.func, ast.Attribute)
                    and first.func.attr == "get"
                    and first.args
                    and isinstance(first.args[0], ast.Constant)
                    and first.args[0].value in names
                )
                if reads_setting and any(
                    isinstance(v, ast.Constant) and v.value is not None for v in rest
                ):
                    offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_value_falls_back_to_the_declared_default() -> None:
    assert settings.value({}, "region") == settings.default("region") == "us"
    assert settings.number({}, "requests_per_second") == 10.0
    assert settings.integer({"page_size": 250}, "page_size") == 250
    # A value the declaration rejects is never used (only reachable where the SDK skips checks).
    assert settings.number({"requests_per_second": 0}, "requests_per_second") == 10.0
    assert settings.value({"region": "moon"}, "region") == "us"


def test_readme_settings_table_matches_the_schema() -> None:
    """The README's table names every setting, with the default the schema declares."""
    readme = (PACKAGE.parent / "README.md").read_text()
    section = readme.split("## Settings", 1)[1].split("\n\n", 2)[1]
    rows = [line.split("|")[1:3] for line in section.splitlines()[2:]]
    table = {name.strip().strip("`"): shown.strip() for name, shown in rows}
    assert list(table) == list(settings.PROPERTIES)
    for name, shown in table.items():
        declared = settings.default(name)
        if declared is not None:
            assert shown == f"`{declared}`", name
