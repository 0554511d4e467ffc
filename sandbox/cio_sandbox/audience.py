"""Customer.io audience filters, evaluated over the world's People by index.

A filter (``and``/``or`` of filters, ``not``, ``segment`` by id, ``attribute`` ``eq``/``exists``)
compiles once into a predicate on a Person's index, reading attributes as the workspace shows them
(landed writes included); ``scan`` pages through the world with it by index (a stable cursor),
``offset_page`` by position in the result set as it is now (a live offset). Deleted People never
match. A filter this sandbox does not understand raises ``FilterError``, whose message says where
in the filter the problem is (``filter.and[1].attribute.value: ...``); the App API answers it
with a 400.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .world import Person, World

Predicate = Callable[[int], bool]
Attributes = Callable[[Person], Mapping[str, str]]


def _generated_attributes(person: Person) -> Mapping[str, str]:
    return person.attributes


def as_attribute_text(value: Any) -> str:
    """An ``eq`` value as the stored string it matches: ``true`` for True, ``2`` for 2."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# Indexes a page may scan before it answers with what it found so far (when it found something),
# so sparse filters over a huge world stay responsive. Reading attributes costs far more per step.
SCAN_BUDGET_INDEX_ONLY = 200_000
SCAN_BUDGET_ATTRIBUTES = 5_000


class FilterError(ValueError):
    """An audience filter that is malformed or uses something this sandbox does not offer."""


class AudienceFilter:
    """A compiled ``audienceFilter``: and/or, not, segment id, attribute eq/exists."""

    def __init__(
        self, world: World, node: Any, attributes: Attributes = _generated_attributes
    ) -> None:
        self._world = world
        self._attributes = attributes
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
            return lambda i: field in self._attributes(self._world.person(i))
        if operator == "eq":
            # Typed string, but the vendor's own examples send booleans ("value": true); every
            # attribute is stored as a string, so a boolean or a number matches its text.
            wanted = value.get("value")
            if not isinstance(wanted, str | int | float):
                raise FilterError(
                    f"{where}.attribute.value: expected a string, a number or a boolean"
                )
            text = as_attribute_text(wanted)
            self.reads_attributes = True
            return lambda i: self._attributes(self._world.person(i)).get(field) == text
        raise FilterError(f"{where}.attribute.operator: expected eq or exists")


def scan(
    world: World, matches: Predicate, start: int, limit: int, budget: int
) -> tuple[list[int], int | None]:
    """Up to ``limit`` matching indexes from ``start``, and where the next page starts (or None)."""
    found: list[int] = []
    end = world.index_end
    i = start
    while i < end:
        if world.is_live(i) and matches(i):
            if len(found) == limit:
                return found, i  # the next page starts at a match, so it is never empty
            found.append(i)
        i += 1
        budget -= 1
        if budget <= 0 and found and i < end:
            return found, i
    return found, None


def offset_page(
    world: World, matches: Predicate, offset: int, limit: int
) -> tuple[list[int], bool]:
    """The matches at positions ``offset`` to ``offset + limit`` of the result set as it is now,
    and whether more follow. Each call evaluates the filter afresh from the first Person."""
    found: list[int] = []
    position = 0
    for i in range(world.index_end):
        if not (world.is_live(i) and matches(i)):
            continue
        if position >= offset:
            if len(found) == limit:
                return found, True
            found.append(i)
        position += 1
    return found, False
