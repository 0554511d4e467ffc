"""Singer input that is not what a Singer tap writes stops the run with one line naming the line.

The SDK's msgspec reader quotes an unparsable line in its error and logs it at ERROR, and the line
may hold an email address; its other input errors end in a traceback without saying where. Here
every problem is an `InputError` naming the line number and the problem, never the line's content.

Lines are decoded by msgspec; the careful path (`json` with `object_pairs_hook`) runs only when
msgspec refuses a line or a cheap check says a Singer envelope key may be given twice
(`decode_message`). JSON that is not an object, nesting deeper than a parser follows and a repeated
envelope key (a RECORD whose second "type" would make it a STATE) are input errors like broken
JSON. Lone UTF-16 surrogates, which msgspec refuses and the App API's JSON allows, are replaced
with U+FFFD and the record kept, with a WARNING naming it by stream and key properties.

Reading is also where a run stops early (an error, a termination signal): `on_stop` lets the
target close its sender and log its summary then, since the SDK's `listen` cannot be overridden.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import IO, Any

import msgspec
from singer_sdk.contrib.msgspec import MsgSpecReader, decoder
from singer_sdk.exceptions import RecordsWithoutSchemaException
from typing_extensions import override

from .errors import UserError

HINT = "check the upstream tap or mapper"
#: Lines with lone surrogates named one by one in a WARNING; the rest are only counted.
REPAIR_WARNINGS = 20
LOGGER = logging.getLogger("target-customerio-ev")


class InputError(UserError):
    """Malformed Singer input: one line, without the input's content (it may hold addresses)."""


class RecordBeforeSchemaError(InputError, RecordsWithoutSchemaException):
    """Still the SDK's exception, so the SDK's standard target tests recognise it."""


class LineNumberingReader(MsgSpecReader):
    """Reads Singer lines, numbering them so that every input error can say where it is."""

    @override
    def __init__(self, *, on_stop: Callable[[], None] | None = None) -> None:
        """`on_stop` runs when reading ends by an exception (then the exception goes on)."""
        super().__init__()
        self.on_stop = on_stop
        self.logger = LOGGER
        #: RECORD lines whose lone surrogates were replaced with U+FFFD.
        self.repaired_records = 0
        #: key_properties by stream, from the SCHEMA messages read: how a record is named in logs.
        self._keys: dict[str, tuple[str, ...]] = {}

    @override
    def process_lines(
        self,
        file_input: IO[Any] | None,
        callbacks: dict[str, Callable[[dict[Any, Any]], None]],
    ) -> Counter[str]:
        try:
            return self._read(file_input, callbacks)
        except BaseException:
            if self.on_stop is not None:
                self.on_stop()
            raise

    def _read(
        self,
        file_input: IO[Any] | None,
        callbacks: dict[str, Callable[[dict[Any, Any]], None]],
    ) -> Counter[str]:
        stats: Counter[str] = Counter()
        for number, line in enumerate(file_input or self.default_input, start=1):
            if not line.strip():
                continue
            message = self._decode(line, number)
            kind = message.get("type")
            if kind == "SCHEMA":
                self._remember_keys(message)
            callback = callbacks.get(kind) if isinstance(kind, str) else None
            if callback is None:
                expected = ", ".join(sorted(callbacks))
                raise InputError(
                    f"Input line {number}: unknown Singer message type {_shown(kind)} "
                    f"(expected one of {expected}); {HINT}."
                )
            try:
                callback(message)
            except RecordsWithoutSchemaException:
                raise RecordBeforeSchemaError(
                    f"Input line {number}: RECORD for stream {_shown(message.get('stream'))} "
                    f"before its SCHEMA message; {HINT}."
                ) from None
            except (KeyError, TypeError) as exc:
                raise InputError(
                    f"Input line {number}: malformed {kind} message ({type(exc).__name__}); {HINT}."
                ) from None
            stats[str(kind)] += 1
        if self.repaired_records:
            self.logger.info(
                "%d records held lone UTF-16 surrogates (text that is not valid Unicode): "
                "replaced with U+FFFD and sent.",
                self.repaired_records,
            )
        return stats

    def _decode(self, line: str | bytes, number: int) -> dict[str, Any]:
        try:  # the fast path of `decode_message`, inline: it runs for every line
            message = decoder.decode(line)
        except (msgspec.DecodeError, RecursionError, UnicodeError):
            pass
        else:
            if type(message) is dict and (
                (message.get("type") == "RECORD" and _RECORD_KEYS.issuperset(message))
                or not may_repeat_keys(line, message)
            ):
                return message
        try:
            message, repaired = decode_message(line)
        except LineProblem as problem:
            said = str(problem)
            hint = "is the upstream plugin writing logs to stdout?" if said == NOT_JSON else HINT
            raise InputError(f"Input line {number} {said}; {hint}.".replace("?.", "?")) from None
        if repaired:
            self._repaired(number, message)
        return message

    def _repaired(self, number: int, message: dict[str, Any]) -> None:
        shown = 0
        if message.get("type") == "RECORD":
            self.repaired_records += 1
            shown = self.repaired_records
        if shown > REPAIR_WARNINGS:
            return
        stream = message.get("stream")
        keys = self._keys.get(stream, ()) if isinstance(stream, str) else ()
        self.logger.warning(
            "Input line %d: %s holds lone UTF-16 surrogates (text that is not valid Unicode): "
            "replaced them with U+FFFD and kept it%s.",
            number,
            describe_message(message, keys),
            "; further ones are only counted at the end" if shown == REPAIR_WARNINGS else "",
        )

    def _remember_keys(self, message: dict[str, Any]) -> None:
        stream, keys = message.get("stream"), message.get("key_properties")
        if isinstance(stream, str) and isinstance(keys, list):
            self._keys[stream] = tuple(k for k in keys if isinstance(k, str))


def _shown(value: Any) -> str:
    """A message type or stream name, shortened: never a whole value from the input."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# -- decoding one line (as the mapper's stream_map/singer_io.py: the plugins share no package) ---

#: The envelope keys of each Singer message type (the SDK's BATCH too).
KEYS_OF_TYPE: dict[str, frozenset[str]] = {
    "RECORD": frozenset({"type", "stream", "record", "time_extracted", "version"}),
    "SCHEMA": frozenset({"type", "stream", "schema", "key_properties", "bookmark_properties"}),
    "STATE": frozenset({"type", "value"}),
    "ACTIVATE_VERSION": frozenset({"type", "stream", "version"}),
    "BATCH": frozenset({"type", "stream", "encoding", "manifest"}),
}
#: Keys of Singer messages. One given twice makes a line say two things (a RECORD whose second
#: "type" turns it into a STATE carrying the record): bad input.
ENVELOPE_KEYS: frozenset[str] = frozenset().union(*KEYS_OF_TYPE.values())
_RECORD_KEYS = KEYS_OF_TYPE["RECORD"]
_QUOTED_BYTES = {key: f'"{key}"'.encode() for key in ENVELOPE_KEYS}
_QUOTED_TEXT = {key: f'"{key}"' for key in ENVELOPE_KEYS}
#: An escaped ASCII letter (`\u0074` is "t"): the one way to spell a key that the count misses.
_ESCAPED_ASCII_BYTES = re.compile(rb"\\u00[4-7]")
_ESCAPED_ASCII_TEXT = re.compile(r"\\u00[4-7]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

NOT_JSON = "is not valid JSON"
TOO_DEEP = "is nested too deeply to read"


class LineProblem(ValueError):
    """Why a line is not a Singer message, as a phrase after "Input line N" (never its content)."""


def decode_message(line: bytes | str) -> tuple[dict[str, Any], bool]:
    """One Singer message and whether lone surrogates in it were replaced with U+FFFD.

    msgspec decodes; the careful path runs only when msgspec refuses the line or
    `may_repeat_keys` says so. Raises `LineProblem`.
    """
    try:
        message = decoder.decode(line)
    except (msgspec.DecodeError, RecursionError, UnicodeError):
        return _decode_carefully(line)
    if type(message) is not dict or may_repeat_keys(line, message):
        return _decode_carefully(line)
    return message, False


def may_repeat_keys(line: bytes | str, message: dict[str, Any]) -> bool:
    """Whether the careful path must read this line's top-level keys.

    Yes when the decoded keys do not fit the decoded type (an envelope key of another type, as a
    second "type" leaves behind, escaped or not; an unknown type), and when a line of a type other
    than RECORD (a few per run) has an envelope key twice in its text. A RECORD line whose keys
    fit is not scanned: a RECORD repeating a key of its own type (two "stream" or two "record"
    keys) is read last-wins, as the SDK's reader reads it, because counting keys in every record's
    text costs about 2 µs a record, some 8% of the cached throughput.
    """
    kind = message.get("type")
    allowed = KEYS_OF_TYPE.get(kind) if type(kind) is str else None
    if allowed is None:
        return True
    if not allowed.issuperset(message) and not ENVELOPE_KEYS.isdisjoint(message.keys() - allowed):
        return True
    return kind != "RECORD" and _counted_twice(line, message)


def _counted_twice(line: bytes | str, message: dict[str, Any]) -> bool:
    """Some top-level envelope key appears twice in the text (anywhere: a value may hold one too,
    which only costs a careful read), or an escaped ASCII letter may spell one."""
    if isinstance(line, str):
        for key in message:
            text_pattern = _QUOTED_TEXT.get(key)
            if text_pattern is not None and line.count(text_pattern) > 1:
                return True
        return "\\" in line and _ESCAPED_ASCII_TEXT.search(line) is not None
    for key in message:
        pattern = _QUOTED_BYTES.get(key)
        if pattern is not None and line.count(pattern) > 1:
            return True
    return b"\\" in line and _ESCAPED_ASCII_BYTES.search(line) is not None


def _decode_carefully(line: bytes | str) -> tuple[dict[str, Any], bool]:
    try:
        text = line if isinstance(line, str) else bytes(line).decode("utf-8")
    except UnicodeDecodeError:
        raise LineProblem(NOT_JSON) from None
    if isinstance(line, str) and _LONE_SURROGATE.search(text) is not None:
        raise LineProblem(NOT_JSON)  # bytes that were not UTF-8, read with surrogateescape
    repeated: list[tuple[dict[str, Any], list[str]]] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            twice = []
            for key, _ in pairs:
                if key in seen:
                    twice.append(key)
                seen.add(key)
            repeated.append((obj, twice))
        return obj

    try:
        message = json.loads(
            text, object_pairs_hook=pairs_hook, parse_float=Decimal, parse_constant=_no_constant
        )
    except RecursionError:
        raise LineProblem(TOO_DEEP) from None
    except ValueError:  # JSONDecodeError, NaN/Infinity, an integer too long to read
        raise LineProblem(NOT_JSON) from None
    if type(message) is not dict:
        raise LineProblem(f"is not a JSON object (it is {_json_kind(message)})")
    for obj, keys in repeated:
        if obj is message:
            twice = sorted({key for key in keys if key in ENVELOPE_KEYS})
            if twice:
                names = ", ".join(repr(key) for key in twice)
                raise LineProblem(f"gives the key {names} more than once")
    if _SURROGATE_ESCAPE.search(text) is None:
        return message, False
    try:
        return _replace_lone_surrogates(message)
    except RecursionError:
        raise LineProblem(TOO_DEEP) from None


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def _replace_lone_surrogates(message: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    found = False

    def fix(value: Any) -> Any:
        nonlocal found
        if isinstance(value, str):
            if _LONE_SURROGATE.search(value) is None:
                return value
            found = True
            return _LONE_SURROGATE.sub("\ufffd", value)
        if isinstance(value, dict):
            return {fix(key): fix(item) for key, item in value.items()}
        if isinstance(value, list):
            return [fix(item) for item in value]
        return value

    repaired: dict[str, Any] = fix(message)
    return repaired, found


def describe_message(message: Mapping[str, Any], key_properties: Sequence[str]) -> str:
    """The message by its type, stream and key properties (cio_id / id when the stream has none),
    as in `RECORD of stream 'people' (cio_id '42')`; never a value that looks like an address."""
    kind = message.get("type")
    text = kind if isinstance(kind, str) and kind.isalpha() and len(kind) <= 20 else "message"
    stream = message.get("stream")
    if stream is not None:
        text += f" of stream {_shown(stream)}"
    record = message.get("record")
    if isinstance(record, Mapping):
        names = list(key_properties) or [name for name in ("cio_id", "id") if name in record]
        parts = [f"{name} {_key_value(record.get(name))}" for name in names[:3]]
        if parts:
            text += f" ({', '.join(parts)})"
    return text


def _key_value(value: Any) -> str:
    if isinstance(value, str):
        return "(not shown: it holds an @)" if "@" in value else _shown(value)
    if value is None or isinstance(value, int | bool):
        return repr(value)
    return "(not shown)"
