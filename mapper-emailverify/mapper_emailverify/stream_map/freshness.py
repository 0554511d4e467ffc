"""Recognise a verification a record already carries, so a recent one is passed on without a probe.

Two places are read, first match wins: the record's own `{prefix}*` fields (an upstream mapper or an
earlier run's output), then `attributes.{prefix}*` as the tap reads them from Customer.io, where
every value is a string and the timestamp is Unix seconds. With the tap's `flattening_enabled`, the
`attributes` object arrives as fields `attributes__{prefix}Status` (`__`, or whatever the tap's
`flattening_separator` is): those are read too, or every Person would be probed again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from mapper_emailverify.stream_map.verdict_cache import Verdict, lifetime
from mapper_emailverify.taxonomy import Status

STATUSES = frozenset(str(status) for status in Status)
_CLOCK_SKEW = 86400.0  # a timestamp further in the future than this is not trusted


@dataclass(frozen=True)
class FieldNames:
    """The three output fields for one `field_prefix`."""

    status: str
    substatus: str
    timestamp: str

    @classmethod
    def for_prefix(cls, prefix: str) -> FieldNames:
        return cls(f"{prefix}Status", f"{prefix}SubStatus", f"{prefix}Validation_Timestamp")


def parse_timestamp(value: Any) -> float | None:
    """Unix seconds (number or digit string; milliseconds are recognised) or ISO 8601, else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | Decimal):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            seconds = float(text)
        except ValueError:
            try:
                parsed = dt.datetime.fromisoformat(
                    text.replace("Z", "+00:00").replace("z", "+00:00")
                )
            except ValueError:
                return None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.UTC)
            return parsed.timestamp()
    elif isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
    else:
        return None
    if seconds > 1e11:  # milliseconds since the epoch
        seconds /= 1000.0
    return seconds if seconds > 0 else None


def _carried(source: Mapping[str, Any], names: FieldNames) -> Verdict | None:
    status = source.get(names.status)
    if not isinstance(status, str) or status not in STATUSES:
        return None
    substatus = source.get(names.substatus)
    if not isinstance(substatus, str) or not substatus:
        return None
    seconds = parse_timestamp(source.get(names.timestamp))
    return None if seconds is None else Verdict(status, substatus, seconds)


def carried(record: Mapping[str, Any], names: FieldNames) -> Verdict | None:
    """The verification the record carries, however old: its own fields first, then
    `attributes` as the tap reads them from Customer.io (an object, or flattened into fields)."""
    verdict = _carried(record, names)
    if verdict is None:
        attributes = record.get("attributes")
        # `type is dict` first: the ABC check alone costs more than the rest for a plain record
        if type(attributes) is dict or isinstance(attributes, Mapping):
            verdict = _carried(attributes, names)
        elif attributes is None:
            verdict = _flattened(record, names)
    return verdict


_PARENT = "attributes"


def _flattened(record: Mapping[str, Any], names: FieldNames) -> Verdict | None:
    """`attributes.{prefix}*` as a Singer flattening writes them: `attributes{sep}{prefix}Status`,
    whatever the separator (the SDK's `flattening_separator`, `__` unless set)."""
    suffix = names.status
    for key in record:
        if (
            isinstance(key, str)
            and key.endswith(suffix)
            and key.startswith(_PARENT)
            and _is_separator(key[len(_PARENT) : len(key) - len(suffix)])
        ):
            separator = key[len(_PARENT) : len(key) - len(suffix)]
            fields = (names.status, names.substatus, names.timestamp)
            return _carried({n: record.get(f"{_PARENT}{separator}{n}") for n in fields}, names)
    return None


def _is_separator(text: str) -> bool:
    """A flattening separator joins two names: not empty, no letters or digits."""
    return bool(text) and not any(char.isalnum() for char in text)


def carried_verdict(
    record: Mapping[str, Any],
    names: FieldNames,
    now: float,
    max_age: float,
    transient_max_age: float | None = None,
    not_before: float | None = None,
) -> Verdict | None:
    """The verification the record carries while it is still trusted, else None.

    `max_age` for verdicts about the mailbox; `transient_max_age` (when given) for Unknowns that
    describe the moment (a fault, a greylist), so those are retried sooner; a verdict reached
    before `not_before` (the `reverify_before` setting) is never trusted.
    """
    verdict = carried(record, names)
    if verdict is None:
        return None
    if transient_max_age is not None:
        max_age = lifetime(verdict.status, verdict.substatus, max_age, transient_max_age)
    if not (now - max_age <= verdict.validated_at <= now + _CLOCK_SKEW):
        return None
    if not_before is not None and verdict.validated_at < not_before:
        return None
    return verdict


def definite(verdict: Verdict | None) -> bool:
    """A verdict about the mailbox (Valid, Invalid, Catch-All, Disposable), not an Unknown."""
    return verdict is not None and verdict.status != "Unknown"
