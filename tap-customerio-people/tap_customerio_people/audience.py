"""The ``filter`` setting: a Customer.io audience filter or a preset, checked before any request.

The grammar is the one the search endpoint takes (``POST /v1/customers``, SPEC-TRACK
``audienceFilter``): every node is an object with exactly one key, one of

- ``and`` / ``or``: a non-empty list of nodes;
- ``not``: one node;
- ``segment``: ``{"id": <segment id, a positive integer>}``;
- ``attribute``: ``{"field": <non-empty string>, "operator": "eq" | "exists", "value": ...}``,
  ``value`` a string, number or boolean for ``eq``, absent for ``exists``.

A filter that breaks it is refused at config time with one line naming the node
(``filter.and[1].attribute.operator: expected eq or exists``), never echoing a value: an attribute
value may be personal data. The setting may also hold that JSON as a string (an environment
variable can only give text), or the name of a preset, built on ``status_attribute`` so that a
mapper writing another ``field_prefix`` still works:

- ``unverified``: People without the status attribute (never verified);
- ``unknown``: People whose status attribute equals ``Unknown`` (worth another try).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

STATUS_UNKNOWN = "Unknown"
PRESETS = ("unverified", "unknown")
KINDS = ("and", "or", "not", "segment", "attribute")
OPERATORS = ("eq", "exists")
MAX_DEPTH = 32  # nesting a config may hold (Customer.io's builder nests a few levels)
MAX_SHOWN = 40  # characters of a key a message quotes


def preset(name: str, status_attribute: str) -> dict[str, Any]:
    """The audience filter of preset ``name`` (one of `PRESETS`) on ``status_attribute``."""
    if name == "unverified":
        return {"not": {"attribute": {"field": status_attribute, "operator": "exists"}}}
    if name == "unknown":
        return {"attribute": {"field": status_attribute, "operator": "eq", "value": STATUS_UNKNOWN}}
    raise ValueError(name)


def parsed(value: object) -> tuple[object, str | None]:
    """(the filter as given, error): a string that is not a preset is read as JSON text."""
    if not isinstance(value, str) or value in PRESETS:
        return value, None
    if not value.lstrip().startswith("{"):
        return None, (
            f"filter: expected a preset ({' or '.join(PRESETS)}) or an audience filter object, "
            f"not another string"
        )
    try:
        return json.loads(value), None
    except (ValueError, RecursionError):
        return None, "filter: the string is not valid JSON (expected an audience filter object)"


def filter_error(value: object) -> str | None:
    """Why ``value`` cannot be the ``filter`` setting (one line, no values quoted), or None."""
    if not isinstance(value, str | Mapping):
        return None  # unset, or of a type the JSON Schema check reports
    node, error = parsed(value)
    if error is not None:
        return error
    if isinstance(node, str):
        return None  # a preset
    return node_error(node, "filter", 0)


def node_error(node: object, where: str, depth: int) -> str | None:
    """The first problem of ``node`` (depth first), located by its path from ``filter``."""
    if depth > MAX_DEPTH:
        return f"{where}: nested deeper than {MAX_DEPTH} levels"
    if not isinstance(node, Mapping) or len(node) != 1:
        return f"{where}: expected an object with exactly one of {', '.join(KINDS)}"
    ((kind, inner),) = node.items()
    if kind in ("and", "or"):
        if not isinstance(inner, list) or not inner:
            return f"{where}.{kind}: expected a non-empty list of filters"
        for k, item in enumerate(inner):
            if error := node_error(item, f"{where}.{kind}[{k}]", depth + 1):
                return error
        return None
    if kind == "not":
        return node_error(inner, f"{where}.not", depth + 1)
    if kind == "segment":
        return _segment_error(inner, f"{where}.segment")
    if kind == "attribute":
        return _attribute_error(inner, f"{where}.attribute")
    return f"{where}: unknown filter {_shown(kind)} (expected one of {', '.join(KINDS)})"


def _segment_error(inner: object, where: str) -> str | None:
    if not isinstance(inner, Mapping) or "id" not in inner:
        return f'{where}: expected {{"id": <segment id>}}'
    if extra := sorted(map(str, set(inner) - {"id"})):
        return f"{where}: unexpected key {_shown(extra[0])} (expected only id)"
    segment_id = inner["id"]
    if isinstance(segment_id, bool) or not isinstance(segment_id, int) or segment_id < 1:
        return f"{where}.id: expected a segment id (a positive integer)"
    return None


def _attribute_error(inner: object, where: str) -> str | None:
    if not isinstance(inner, Mapping):
        return f'{where}: expected {{"field", "operator", "value"}}'
    if extra := sorted(map(str, set(inner) - {"field", "operator", "value"})):
        return f"{where}: unexpected key {_shown(extra[0])} (expected field, operator, value)"
    field = inner.get("field")
    if not isinstance(field, str) or not field.strip():
        return f"{where}.field: expected the attribute's name (a non-empty string)"
    operator = inner.get("operator")
    if operator not in OPERATORS:
        return f"{where}.operator: expected {' or '.join(OPERATORS)}"
    if operator == "exists":
        if "value" in inner:
            return f"{where}.value: not allowed with exists (remove it)"
        return None
    if "value" not in inner:
        return f"{where}.value: required with eq (a string, a number or a boolean)"
    wanted = inner["value"]
    if not isinstance(wanted, str | int | float) or (
        isinstance(wanted, float) and not math.isfinite(wanted)
    ):
        return f"{where}.value: expected a string, a number or a boolean"
    return None


def _shown(key: object) -> str:
    text = repr(str(key))
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 4] + "...'"


def resolved(value: object, status_attribute: str) -> dict[str, Any] | None:
    """The audience filter the ``filter`` setting names (None when unset). Checked beforehand."""
    if value is None:
        return None
    node, error = parsed(value)
    if error is not None:  # never: config_errors refused it before the run
        raise ValueError(error)
    if isinstance(node, str):
        return preset(node, status_attribute)
    if not isinstance(node, dict):
        raise ValueError("filter: expected an object")
    return node


def describe(node: Mapping[str, Any]) -> str:
    """A filter for the log: node kinds, segment ids and field names, never an attribute value."""
    ((kind, inner),) = node.items()
    if kind in ("and", "or"):
        parts = [describe(item) for item in inner]
        return parts[0] if len(parts) == 1 else "(" + f" {kind} ".join(parts) + ")"
    if kind == "not":
        return f"not {describe(inner)}"
    if kind == "segment":
        return f"segment {inner['id']}"
    field, operator = str(inner.get("field")), inner.get("operator")
    if not (field.isascii() and field.isprintable()) or " " in field or len(field) > MAX_SHOWN:
        field = _shown(field)
    return f"{field} eq …" if operator == "eq" else f"{field} {operator}"
