"""Customer.io audience filters, evaluated over the world's People by index.

A filter (``and``/``or`` of filters, ``not``, ``segment`` by id, ``attribute`` ``eq``/``exists``)
compiles once into a predicate on a Person's index; ``scan`` pages through the world with it. A
filter this sandbox does not understand raises ``FilterError``, whose message says where in the
filter the problem is (``filter.and[1].attribute.value: ...``); the App API answers it with a 400.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .world import World

Predicate = Callable[[int], bool]

# Indexes a page may scan before it answers with what it found so far (when it found something),
# so sparse filters over a huge world stay responsive. Reading attributes costs far more per step.
SCAN_BUDGET_INDEX_ONLY = 200_000
SCAN_BUDGET_ATTRIBUTES = 5_000


class FilterError(ValueError):
    """An audience filter that is malformed or uses something this sandbox does not offer."""


class AudienceFilter:
    """A compiled ``audienceFilter``: and/or, not, segment id, attribute eq/exists."""

    def __init__(self, world: World, node: Any) -> None:
        self._world = world
        self.reads_attributes = False
        self.matches: Predicate = self._compile(node, "filter")

    def _compile(self, node: Any, where: str) -> Predicate:
        if not isinstance(node, dict) or len(node) != 1:
            raise FilterError(
                f"{where}: expected an object with exactly one of and, or, not, segment, attribute"
            )
        ((kind, value),) = node.items()
        if kind in ("and", "or"):
            if not isinstance(value, list) or not value:
                raise FilterError(f"{where}.{kind}: expected a non-empty list of filters")
            parts = [self._compile(item, f"{where}.{kind}[{k}]") for k, item in enumerate(value)]
            combine = all if kind == "and" else any
            return lambda i: combine(part(i) for part in parts)
        if kind == "not":
            inner = self._compile(value, f"{where}.not")
            return lambda i: not inner(i)
        if kind == "segment":
            return self._segment(value, where)
        if kind == "attribute":
            return self._attribute(value, where)
        raise FilterError(f"{where}: unknown filter {kind!r}")

    def _segment(self, value: Any, where: str) -> Predicate:
        segment_id = value.get("id") if isinstance(value, dict) else None
        if isinstance(segment_id, bool) or not isinstance(segment_id, int | str):
            raise FilterError(f'{where}.segment: expected {{"id": <segment id>}}')
        try:
            rule = self._world.segment_rule(int(segment_id))
        except ValueError:
            raise FilterError(f"{where}.segment.id: not a segment id") from None
        return rule if rule is not None else (lambda i: False)

    def _attribute(self, value: Any, where: str) -> Predicate:
        if (
            not isinstance(value, dict)
            or not isinstance(value.get("field"), str)
            or not value["field"]
        ):
            raise FilterError(f'{where}.attribute: expected {{"field", "operator", "value"}}')
        field, operator = value["field"], value.get("operator")
        if operator == "exists":
            if field == "cio_id":
                return lambda i: True
            self.reads_attributes = True
            return lambda i: field in self._world.person(i).attributes
        if operator == "eq":
            wanted = value.get("value")
            if isinstance(wanted, bool) or not isinstance(wanted, str | int | float):
                raise FilterError(f"{where}.attribute.value: expected a string or a number")
            wanted = str(wanted)
            self.reads_attributes = True
            return lambda i: self._world.person(i).attributes.get(field) == wanted
        raise FilterError(f"{where}.attribute.operator: expected eq or exists")


def scan(
    world: World, matches: Predicate, start: int, limit: int, budget: int
) -> tuple[list[int], int | None]:
    """Up to ``limit`` matching indexes from ``start``, and where the next page starts (or None)."""
    found: list[int] = []
    end = world.people_count
    i = start
    while i < end:
        if matches(i):
            if len(found) == limit:
                return found, i  # the next page starts at a match, so it is never empty
            found.append(i)
        i += 1
        budget -= 1
        if budget <= 0 and found and i < end:
            return found, i
    return found, None
