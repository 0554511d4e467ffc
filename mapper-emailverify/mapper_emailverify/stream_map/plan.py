"""What to do with the records of each stream, decided once from its SCHEMA message.

A stream is verified when its schema declares the email field (or does not say: an object without
declared properties, reached by a dotted path or named in `stream_email_fields`); the bounce history
stream feeds the hard-bounce check; every other stream passes through untouched. Verified streams
get the three output fields added to their schema.

A setting that names a field the stream does not have is a typo, not a stream to pass through: a
`stream_email_fields` entry whose stream lacks its field, or an `email_field` missing from a stream
that has an address field under another name, stops the run at that stream's SCHEMA, before any of
its records, with one line naming the setting and the fields that do exist.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from mapper_emailverify.engine.errors import ConfigError
from mapper_emailverify.stream_map.freshness import FieldNames


class Treatment(StrEnum):
    VERIFY = "verify"
    BOUNCES = "bounces"
    PASS = "pass"


@dataclass(frozen=True)
class StreamPlan:
    """The treatment of one stream and where its records hold the address."""

    kind: Treatment
    path: tuple[str, ...] = ()

    def email(self, record: dict[str, Any]) -> Any:
        value: Any = record
        for part in self.path:
            if not isinstance(value, dict):
                return None
            value = value.get(part)
        return value


PASS = StreamPlan(Treatment.PASS)


def schema_declares(schema: Any, path: tuple[str, ...]) -> bool | None:
    """Whether the schema declares the field; None when it does not say (no properties)."""
    node = schema
    for part in path:
        if not isinstance(node, dict):
            return False
        properties = node.get("properties")
        if not isinstance(properties, dict):
            alternatives = [
                alt
                for key in ("anyOf", "oneOf", "allOf")
                for alt in node.get(key) or ()
                if isinstance(alt, dict) and isinstance(alt.get("properties"), dict)
            ]
            if not alternatives:
                # An object that lists no properties (e.g. a tap's {"type": "object",
                # "additionalProperties": true}) does not say whether the field is there.
                return None if node.get("additionalProperties", True) is not False else False
            properties = {k: v for alt in alternatives for k, v in alt["properties"].items()}
        if part not in properties:
            return False
        node = properties[part]
    return True


#: Field names that hold an address: a schema with one of these but not `email_field` has a typo.
_ADDRESS_NAMES = ("email", "e_mail", "emailaddress", "email_address", "mail")


def field_paths(schema: Any, prefix: str = "", depth: int = 2) -> list[str]:
    """Declared fields, dotted, down to `depth` levels (for messages)."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        return []
    found = []
    for name, node in properties.items():
        found.append(f"{prefix}{name}")
        if depth > 1:
            found += field_paths(node, f"{prefix}{name}.", depth - 1)
    return found


def _address_fields(schema: Any) -> list[str]:
    return [
        path
        for path in field_paths(schema)
        if path.rpartition(".")[2].lower().replace("-", "_") in _ADDRESS_NAMES
        or path.rpartition(".")[2].lower().endswith("_email")
    ]


def with_verdict_fields(
    message: dict[str, Any], names: FieldNames, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The SCHEMA message with the three nullable output fields added, then the `extra_fields`
    selected (`extra`: their properties; none by default)."""
    schema = message["schema"]
    properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    return {
        **message,
        "schema": {
            **schema,
            "properties": {
                **properties,
                names.status: {"type": ["string", "null"]},
                names.substatus: {"type": ["string", "null"]},
                names.timestamp: {"type": ["string", "null"], "format": "date-time"},
                **(extra or {}),
            },
        },
    }


class Planner:
    """Holds the plan of every stream seen so far; says in the log what it decided, once."""

    def __init__(
        self,
        email_field: str,
        stream_email_fields: dict[str, str],
        bounce_stream: str | None,
        logger: logging.Logger,
    ) -> None:
        self.email_field = email_field
        self.stream_email_fields = stream_email_fields
        self.bounce_stream = bounce_stream
        self.logger = logger
        self._plans: dict[str, StreamPlan] = {}

    def get(self, stream: Any) -> StreamPlan | None:
        return self._plans.get(stream) if isinstance(stream, str) else None

    def on_schema(self, stream: str, schema: Any) -> StreamPlan:
        plan = self.decide(stream, schema)
        if self._plans.get(stream) != plan:
            self._describe(stream, plan)
        self._plans[stream] = plan
        return plan

    def decide(self, stream: str, schema: Any) -> StreamPlan:
        named = stream in self.stream_email_fields
        field = self.stream_email_fields.get(stream, self.email_field)
        path = tuple(part for part in field.split(".") if part)
        if not path:
            return PASS
        declared = schema_declares(schema, path)
        if declared is False:
            self._check_typo(stream, schema, field, named)
        if stream == self.bounce_stream:
            return StreamPlan(Treatment.BOUNCES, path) if declared is not False else PASS
        if declared or (declared is None and (named or len(path) > 1)):
            return StreamPlan(Treatment.VERIFY, path)
        return PASS

    def _check_typo(self, stream: str, schema: Any, field: str, named: bool) -> None:
        """A field named by a setting that the stream lacks, where it has an address field."""
        fields = field_paths(schema)
        shown = ", ".join(fields[:20]) + (", ..." if len(fields) > 20 else "")
        if named:
            raise ConfigError(
                f"stream_email_fields: stream '{stream}' has no field '{field}'; its fields are: "
                f"{shown or '(none declared)'}"
            )
        candidates = _address_fields(schema)
        if candidates:
            raise ConfigError(
                f"email_field '{field}' is not a field of stream '{stream}', which has "
                f"{', '.join(candidates)}: set email_field (or stream_email_fields for this "
                "stream) to the field that holds the address"
            )

    def _describe(self, stream: str, plan: StreamPlan) -> None:
        field = ".".join(plan.path)
        if plan.kind is Treatment.VERIFY:
            self.logger.info("Stream '%s': verifying field '%s'.", stream, field)
        elif plan.kind is Treatment.BOUNCES:
            self.logger.info(
                "Stream '%s': hard-bounce history (field '%s'); records pass through.",
                stream,
                field,
            )
        else:
            wanted = self.stream_email_fields.get(stream, self.email_field)
            self.logger.info(
                "Stream '%s' has no field '%s' in its schema: records pass through untouched.",
                stream,
                wanted,
            )
