"""Record validation: compiled (fastjsonschema) for speed, and silent about the record's content.

The SDK's default validator interprets the schema for every record (half of a target's CPU time) and
chains jsonschema's error, whose text prints the whole record, personal data included, into the log.
Here the error names the field and the rule only, and the sink dead-letters the record instead of
failing the run: one malformed upstream record must not hold back every Person after it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fastjsonschema
from singer_sdk.exceptions import InvalidRecord
from singer_sdk.sinks.core import BaseJSONSchemaValidator, JSONSchemaValidator
from typing_extensions import override


def _compile(schema: dict[str, Any]) -> Callable[[dict[str, Any]], Any] | None:
    try:
        return fastjsonschema.compile(schema, use_default=False, use_formats=False)
    except (fastjsonschema.JsonSchemaDefinitionException, TypeError, ValueError):
        return None  # a schema fastjsonschema cannot compile: interpret it with jsonschema instead


def _reason(where: str, rule: Any, definition: Any) -> str:
    return f"record does not match the stream schema at {where}: {rule} {definition!r}"


class RecordValidator(BaseJSONSchemaValidator):
    @override
    def __init__(self, schema: dict[str, Any]) -> None:
        super().__init__(schema)
        # The SDK's interpreting validator also rejects an invalid schema up front.
        self._interpreted = JSONSchemaValidator(schema).validator
        self._compiled = _compile(schema)
        self._rejected: tuple[int, str] | None = None

    @override
    def validate(self, record: dict[str, Any]) -> None:
        reason = self._problem(record)
        if reason is not None:
            self._rejected = (id(record), reason)
            raise InvalidRecord(reason, {})

    def _problem(self, record: dict[str, Any]) -> str | None:
        if self._compiled is not None:
            try:
                self._compiled(record)
            except fastjsonschema.JsonSchemaValueException as exc:
                where = ".".join(str(p) for p in (exc.path or [])[1:]) or "(record)"
                return _reason(where, exc.rule, exc.rule_definition)
            return None
        # The first error, as `validate()` would raise it (without importing jsonschema's types).
        error = next(iter(self._interpreted.iter_errors(record)), None)
        if error is None:
            return None
        where = ".".join(str(p) for p in error.absolute_path) or "(record)"
        return _reason(where, error.validator, error.validator_value)

    def take_rejection(self, record: dict[str, Any]) -> str | None:
        """Why the record just validated was invalid, or None (records come one at a time)."""
        rejected, self._rejected = self._rejected, None
        return rejected[1] if rejected is not None and rejected[0] == id(record) else None
