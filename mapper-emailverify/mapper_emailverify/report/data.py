"""Reading a report dict defensively: it may come from an older mapper, another machine or a
hand-edited file, so every value is checked for its type and a missing part reads as empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def number(value: Any) -> float:
    """A count or a duration; anything else (a bool, a string, None) is 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return value if value == value else 0  # NaN is 0


def count(value: Any) -> int:
    return int(number(value))


def text(value: Any) -> str:
    return "" if value is None else str(value)


def mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def rows(value: Any) -> list[Mapping[str, Any]]:
    """A list of objects (the objects only)."""
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def counts(value: Any) -> dict[str, int]:
    """A name -> count object, the counts made integers."""
    return {str(name): count(n) for name, n in mapping(value).items()}
