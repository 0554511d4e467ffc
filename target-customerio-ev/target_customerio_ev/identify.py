"""Turn a Singer record into one Person write: who, which traits, and whether it is needed at all.

The result is API-neutral (`Write`); `pipelines.py` or `track.py` turns it into that API's JSON.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

_CANONICAL = msgspec.json.Encoder(order="sorted", decimal_format="number")


@dataclass(frozen=True)
class Identifier:
    """How Customer.io finds the Person: kind is id, email or cio_id."""

    kind: str
    value: str


KIND_NAMES = {"id": "by id", "email": "email-only", "cio_id": "by cio_id"}


def kind_name(kind: str) -> str:
    """How People identified by `kind` are named in messages ("email-only", "by id")."""
    return KIND_NAMES.get(kind, f"by {kind}")


@dataclass(frozen=True)
class Write:
    """One upsert of traits onto one Person, with an id that is the same every time it is built."""

    identifier: Identifier
    traits: dict[str, Any]
    message_id: str
    cio_id: str | None = None  # for dead-letter reports and logs (not personal data)


@dataclass(frozen=True)
class Rejected:
    """A record that cannot become a write; it goes to the dead letters with this reason."""

    reason: str
    cio_id: str | None = None


SKIPPED_UNCHANGED = "unchanged"
SKIPPED_EMPTY = "empty"


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def identify(record: Mapping[str, Any], identify_by: str) -> Identifier | str:
    """The Person's identifier, or a reason why the record has none (auto: id, else the email)."""
    if identify_by == "cio_id":
        cio_id = _text(record.get("cio_id"))
        return Identifier("cio_id", cio_id) if cio_id else "no cio_id on the record"
    if identify_by in ("id", "auto"):
        person_id = _text(record.get("id"))
        if person_id:
            return Identifier("id", person_id)
        if identify_by == "id":
            return "no id on the record"
    email = _text(record.get("email"))
    if email:
        return Identifier("email", email)
    return (
        "no email on the record" if identify_by == "email" else "no id and no email on the record"
    )


def to_unix(value: dt.datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return math.floor(value.timestamp())


def to_iso(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def parse_datetime(text: str) -> dt.datetime | None:
    """ISO 8601 date-time, or None when the text is not one (3.11 accepts 'Z' and offsets)."""
    if len(text) < 10 or not text[:4].isdigit() or text[4] != "-":
        return None
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return None


def trait_value(value: Any, *, timestamp_format: str, is_datetime: bool) -> Any:
    """A JSON-safe trait value; datetimes (parsed by the SDK, or text) follow timestamp_format."""
    if type(value) is str and not is_datetime:  # the common case, before the isinstance chain
        return value
    if isinstance(value, str) and is_datetime:
        parsed = parse_datetime(value)
        value = parsed if parsed is not None else value
    if isinstance(value, dt.datetime):
        return to_unix(value) if timestamp_format == "unix" else to_iso(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {
            k: trait_value(v, timestamp_format=timestamp_format, is_datetime=False)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [trait_value(v, timestamp_format=timestamp_format, is_datetime=False) for v in value]
    return value


def comparable(value: Any) -> str | None:
    """The string Customer.io stores for a value, so sent traits and stored attributes compare.

    Attributes come back from the App API as strings; timestamps as Unix seconds.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return str(to_unix(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | decimal.Decimal):
        number = float(value)
        return str(int(number)) if number.is_integer() else repr(number)
    if isinstance(value, str):
        text = value.strip()
        parsed = parse_datetime(text)
        if parsed is not None:
            return str(to_unix(parsed))
        try:
            number = float(text)
        except ValueError:
            return text
        return str(int(number)) if number.is_integer() and math.isfinite(number) else text
    return _CANONICAL.encode(value).decode()


def message_id(identifier: Identifier, traits: Mapping[str, Any]) -> str:
    """Same Person, same traits: same id, so Customer.io deduplicates a replayed batch."""
    digest = hashlib.sha256(f"{identifier.kind}:{identifier.value}\n".encode())
    digest.update(_CANONICAL.encode(traits))
    return f"ev-{digest.hexdigest()[:32]}"


@dataclass(frozen=True)
class WriteBuilder:
    """Builds writes for one stream; knows which traits are date-times from the stream's schema."""

    identify_by: str
    traits: tuple[str, ...]
    timestamp_format: str = "unix"
    skip_unchanged: bool = True
    datetime_fields: frozenset[str] = frozenset()

    @classmethod
    def for_schema(cls, schema: Mapping[str, Any], **options: Any) -> WriteBuilder:
        return cls(datetime_fields=frozenset(datetime_properties(schema)), **options)

    def build(self, record: Mapping[str, Any]) -> Write | Rejected | str:
        """A Write, a Rejected record, or SKIPPED_UNCHANGED / SKIPPED_EMPTY."""
        cio_id = _text(record.get("cio_id"))
        traits = {}
        for name in self.traits:
            raw = record.get(name)
            if raw is None or name.startswith("_sdc_"):
                continue
            traits[name] = trait_value(
                raw,
                timestamp_format=self.timestamp_format,
                is_datetime=name in self.datetime_fields,
            )
        if not traits:
            return SKIPPED_EMPTY
        who = identify(record, self.identify_by)
        if isinstance(who, str):
            return Rejected(who, cio_id)
        if self.skip_unchanged and self.unchanged(stored_attributes(record, traits), traits):
            return SKIPPED_UNCHANGED
        return Write(who, traits, message_id(who, traits), cio_id)

    @staticmethod
    def unchanged(attributes: Any, traits: Mapping[str, Any]) -> bool:
        if not isinstance(attributes, Mapping):
            return False
        for name, value in traits.items():
            stored = attributes.get(name)
            if stored is None:  # never verified (traits hold no None): the common first-run case
                return False
            if stored != value and comparable(stored) != comparable(value):
                return False
        return True


_PARENT = "attributes"


def stored_attributes(record: Mapping[str, Any], names: Iterable[str]) -> Any:
    """The Person's current attributes as the tap read them: the `attributes` object, or, after a
    Singer flattening (the tap's or this target's `flattening_enabled`), the fields
    `attributes{sep}{name}` for `names` (`sep` is `flattening_separator`, `__` unless set)."""
    attributes = record.get(_PARENT)
    if attributes is not None:
        return attributes
    wanted = tuple(names)
    for key in record:
        for name in wanted:
            if isinstance(key, str) and key.endswith(name) and key.startswith(_PARENT):
                separator = key[len(_PARENT) : len(key) - len(name)]
                if separator and not any(char.isalnum() for char in separator):
                    return {n: record.get(f"{_PARENT}{separator}{n}") for n in wanted}
    return None


def datetime_properties(schema: Mapping[str, Any]) -> Iterable[str]:
    for name, prop in (schema.get("properties") or {}).items():
        options = [prop, *(prop.get("anyOf") or ()), *(prop.get("oneOf") or ())]
        if any(isinstance(o, Mapping) and o.get("format") == "date-time" for o in options):
            yield name
