"""The seam between the plugins and singer-sdk, declared and checked in one place.

The plugins override public hooks where the SDK offers them, and a few private members where it
does not (`SEAM`). After an SDK upgrade this file fails first, naming our site, instead of a
pipeline failing somewhere later:

- every private SDK member we override, call or set still exists with the parameters we expect;
- every override of an SDK member carries `@override`, and none overrides an SDK `@final`;
- no private SDK member is used that `SEAM` does not declare (found by reading the source).
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import pkgutil
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PACKAGES = ("tap_customerio_people", "mapper_emailverify", "target_customerio_ev")

#: (our site, SDK class, member, parameters we rely on; None for a plain attribute).
SEAM: list[tuple[str, str, str, str | None]] = [
    # -- every plugin
    (
        "tap.py, target.py: config checks beyond JSON schema, one line each",
        "singer_sdk.plugin_base:PluginBase",
        "_validate_config",
        "(self, *, raise_errors=True)",
    ),
    (
        "tap.py, target.py: _validate_config fills schema defaults into the SDK's own config dict",
        "singer_sdk.plugin_base:PluginBase",
        "_config",
        None,
    ),
    (
        "stream_map/mapper.py: SIGTERM stops reading without writing held STATE",
        "singer_sdk.plugin_base:PluginBase",
        "_handle_termination",
        "(self, signum, frame)",
    ),
    (
        "tap.py: SIGTERM writes state and exits 143",
        "singer_sdk.tap_base:Tap",
        "_handle_termination",
        "(self, signum, frame)",
    ),
    (
        "target.py: SIGTERM drains what is pending, then exits 128 + signal",
        "singer_sdk.target_base:Target",
        "_handle_termination",
        "(self, signum, frame)",
    ),
    # -- tap
    (
        "client.py: CustomerIOStream.retrying_request wraps the SDK's one-attempt sender",
        "singer_sdk.streams.rest:_HTTPStream",
        "_request",
        "(self, prepared_request, context)",
    ),
    (
        "streams.py: PeopleStream holds its SCHEMA until the listing has counted the People",
        "singer_sdk.streams.core:Stream",
        "_write_schema_message",
        "(self)",
    ),
    (
        "streams.py: PeopleStream's SCHEMA carries expected_record_count",
        "singer_sdk.streams.core:Stream",
        "_generate_schema_messages",
        "(self)",
    ),
    # -- mapper
    (
        "stream_map/mapper.py: EmailVerifyMapper.map_schema_message",
        "singer_sdk.plugin_base:BaseSingerReader",
        "_assert_line_requires",
        "(self, message_dict, requires)",
    ),
    (
        "stream_map/singer_io.py, target reader.py: unknown message types name the input line",
        "singer_sdk.singerlib.encoding.base:GenericSingerReader",
        "_process_unknown_message",
        "(self, message_dict)",
    ),
    # -- target
    (
        "target.py: TargetCustomerIOEV._write_state_message (STATE only after everything landed;"
        " with the landing check, held until the end-of-run checks pass)",
        "singer_sdk.target_base:Target",
        "_write_state_message",
        "(self, state)",
    ),
    (
        "target.py: TargetCustomerIOEV (checkpoint_interval_seconds)",
        "singer_sdk.target_base:Target",
        "_MAX_RECORD_AGE_IN_MINUTES",
        None,
    ),
    (
        "target.py: TargetCustomerIOEV._handle_termination drains every sink (@final)",
        "singer_sdk.target_base:Target",
        "drain_all",
        "(self, *, is_endofpipe=False)",
    ),
    (
        "sinks.py: CustomerIOSink._parse_timestamps_in_record (the target parses its own)",
        "singer_sdk.sinks.core:Sink",
        "_parse_timestamps_in_record",
        "(self, record, schema, treatment)",
    ),
    (
        "sinks.py: CustomerIOSink.process_record reads why the SDK's validation rejected a record",
        "singer_sdk.sinks.core:Sink",
        "_validator",
        None,
    ),
]


#: Module-level names we import from singer-sdk that are private or not part of its documented API:
#: (our site, module, name, parameters relied on; None for a value).
MODULE_SEAM: list[tuple[str, str, str, str | None]] = [
    (
        "target sinks.py: which fields are date-times",
        "singer_sdk.helpers._typing",
        "get_datelike_property_type",
        "(property_schema)",
    ),
    (
        "tap and target settings.py: the default-filling config validator",
        "singer_sdk.plugin_base",
        "JSONSchemaValidator",
        None,
    ),
    (
        "target validation.py: the record validator wrapped for its rules",
        "singer_sdk.sinks.core",
        "JSONSchemaValidator",
        None,
    ),
    (
        "target validation.py: the validator base class",
        "singer_sdk.sinks.core",
        "BaseJSONSchemaValidator",
        None,
    ),
    ("mapper and target singer_io/reader.py", "singer_sdk.contrib.msgspec", "decoder", None),
    ("mapper singer_io.py", "singer_sdk.contrib.msgspec", "enc_hook", "(obj)"),
]


@pytest.mark.parametrize(
    ("site", "module", "name", "expected"), MODULE_SEAM, ids=[f"{m[1]}.{m[2]}" for m in MODULE_SEAM]
)
def test_module_level_sdk_names_we_rely_on_still_exist(
    site: str, module: str, name: str, expected: str | None
) -> None:
    found = getattr(importlib.import_module(module), name, None)
    assert found is not None, f"singer-sdk's {module} no longer has {name}, which {site} uses"
    if expected is not None:
        assert shape(found) == expected, (
            f"singer-sdk's {module}.{name} is now {shape(found)}; {site} expects {expected}"
        )


def test_no_undeclared_private_sdk_imports() -> None:
    """An import from a private SDK module, or of a private name, is declared in MODULE_SEAM."""
    declared = {(module, name) for _, module, name, _ in MODULE_SEAM}
    undeclared = []
    for package in PACKAGES:
        root = Path(importlib.import_module(package).__file__ or "").parent
        for path in sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.ImportFrom) or not node.module:
                    continue
                if node.module.split(".")[0] != "singer_sdk":
                    continue
                for alias in node.names:
                    private = any(p.startswith("_") for p in [*node.module.split("."), alias.name])
                    if private and (node.module, alias.name) not in declared:
                        undeclared.append(f"{path}:{node.lineno} {node.module}.{alias.name}")
    assert not undeclared, "declare in MODULE_SEAM (tests/test_sdk_seam.py):\n" + "\n".join(
        undeclared
    )


def _sdk_class(path: str) -> type[Any]:
    module, _, name = path.partition(":")
    found = getattr(importlib.import_module(module), name)
    assert isinstance(found, type)
    return found


def shape(member: Any) -> str:
    """`(self, *, raise_errors=True)`: parameter names, kinds and defaults, not annotations."""
    function = member.__func__ if isinstance(member, classmethod | staticmethod) else member
    if isinstance(function, property):
        function = function.fget
    parts = []
    star_done = False
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind is parameter.KEYWORD_ONLY and not star_done:
            parts.append("*")
            star_done = True
        if parameter.kind is parameter.VAR_POSITIONAL:
            star_done = True
            parts.append(f"*{parameter.name}")
            continue
        if parameter.kind is parameter.VAR_KEYWORD:
            parts.append(f"**{parameter.name}")
            continue
        shown = parameter.name
        if parameter.default is not parameter.empty:
            shown += f"={parameter.default!r}"
        parts.append(shown)
    return f"({', '.join(parts)})"


@pytest.mark.parametrize(("site", "owner", "member", "expected"), SEAM, ids=[s[2] for s in SEAM])
def test_private_sdk_members_we_rely_on_still_exist(
    site: str, owner: str, member: str, expected: str | None
) -> None:
    cls = _sdk_class(owner)
    assert member in vars(cls) or member in _instance_attributes(cls), (
        f"singer-sdk's {owner} no longer has {member}, which {site} relies on: "
        "read the SDK's changelog and move our code to its replacement"
    )
    if expected is not None:
        actual = shape(vars(cls)[member])
        assert actual == expected, (
            f"singer-sdk's {owner}.{member} is now {actual}; {site} expects {expected}"
        )


# ------------------------------------------------------------------------------ discovery
def plugin_classes() -> Iterator[type[Any]]:
    """Every class of the three plugins that subclasses a singer-sdk class."""
    for package in PACKAGES:
        root = importlib.import_module(package)
        names = [package]
        names += [m.name for m in pkgutil.walk_packages(root.__path__, prefix=f"{package}.")]
        for name in names:
            if name.endswith(".__main__"):
                continue  # runs the plugin when imported
            module = importlib.import_module(name)
            for value in vars(module).values():
                if (
                    isinstance(value, type)
                    and value.__module__ == name
                    and any(base.__module__.startswith("singer_sdk") for base in value.__mro__)
                ):
                    yield value


@functools.cache
def _instance_attributes(base: type[Any]) -> frozenset[str]:
    """Names a singer-sdk class assigns on `self` (`self._config = ...`) in its own source."""
    try:
        source = inspect.getsource(base)
    except (OSError, TypeError):
        return frozenset()
    return frozenset(re.findall(r"self\.(\w+)\s*(?::[^=\n]*)?=[^=]", source))


def sdk_owner(cls: type[Any], name: str) -> type[Any] | None:
    """The nearest singer-sdk class in `cls`'s MRO that defines `name` (or sets it on `self`)."""
    for base in cls.__mro__[1:]:
        if base.__module__.startswith("singer_sdk") and (
            name in vars(base) or name in _instance_attributes(base)
        ):
            return base
    return None


def _declared() -> set[tuple[str, str]]:
    return {(member, owner.partition(":")[2]) for _, owner, member, _ in SEAM}


def _marked_override(member: Any) -> bool:
    for candidate in (member, getattr(member, "__func__", None), getattr(member, "fget", None)):
        if candidate is not None and getattr(candidate, "__override__", False):
            return True
    return False


CLASSES = sorted(plugin_classes(), key=lambda c: f"{c.__module__}.{c.__qualname__}")


def test_the_plugins_have_sdk_subclasses() -> None:
    names = {c.__name__ for c in CLASSES}
    assert {"TapCustomerIOPeople", "EmailVerifyMapper", "TargetCustomerIOEV"} <= names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__qualname__)
def test_overrides_are_marked_and_never_final(cls: type[Any]) -> None:
    site = f"{inspect.getsourcefile(cls)}: {cls.__qualname__}"
    for name, member in vars(cls).items():
        owner = sdk_owner(cls, name)
        function = member.fget if isinstance(member, property) else member
        function = getattr(function, "__func__", function)
        if owner is None or name.startswith("__") or not inspect.isfunction(function):
            continue  # a plain attribute (name, capabilities, reader class): nothing to mark
        sdk_member = vars(owner)[name]
        final = getattr(getattr(sdk_member, "__func__", sdk_member), "__final__", False)
        assert not final, f"{site}.{name} overrides {owner.__qualname__}.{name}, which is @final"
        assert _marked_override(member), f"{site}.{name} overrides the SDK: mark it @override"
        if name.startswith("_"):
            assert (name, owner.__name__) in _declared(), (
                f"{site}.{name} overrides the private {owner.__module__}:{owner.__name__}.{name}:"
                " declare it in SEAM (tests/test_sdk_seam.py) with the parameters relied on"
            )


def _is_final(owner: type[Any], name: str) -> bool:
    member = vars(owner).get(name)
    member = getattr(member, "__func__", member)
    return bool(getattr(member, "__final__", False))


def _private_uses(cls: type[Any]) -> Iterator[tuple[str, int]]:
    """`self.x`, `cls.x` and `super().x` in the class body, for an SDK member `x` that is
    private (`_x`) or `@final`."""
    try:
        source, first = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return
    tree = ast.parse(textwrap.dedent("".join(source)))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or node.attr.startswith("__"):
            continue
        target = node.value
        on_self = isinstance(target, ast.Name) and target.id in ("self", "cls")
        on_super = (
            isinstance(target, ast.Call)
            and isinstance(target.func, ast.Name)
            and target.func.id == "super"
        )
        owner = sdk_owner(cls, node.attr) if on_self or on_super else None
        if owner is not None and (node.attr.startswith("_") or _is_final(owner, node.attr)):
            yield node.attr, first + node.lineno - 1


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__qualname__)
def test_private_sdk_members_used_are_declared(cls: type[Any]) -> None:
    path = Path(inspect.getsourcefile(cls) or "?")
    undeclared = []
    for name, line in _private_uses(cls):
        owner = sdk_owner(cls, name)
        assert owner is not None
        if (name, owner.__name__) not in _declared() and name not in vars(cls):
            undeclared.append(
                f"{path.name}:{line} {cls.__qualname__} uses {owner.__module__}:"
                f"{owner.__name__}.{name}"
            )
    assert not undeclared, (
        "private or final singer-sdk members used but not declared in SEAM "
        "(tests/test_sdk_seam.py):\n" + "\n".join(undeclared)
    )
