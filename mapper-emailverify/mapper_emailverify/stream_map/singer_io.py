"""The SDK's msgspec reader and writer, adapted to a mapper whose output is written from two
threads.

Reader: decodes bytes from stdin (no text layer), never echoes an unparsable line (it may hold an
address) and lets the mapper interrupt a blocking read on SIGTERM. Lines are decoded by msgspec;
the careful path (`json` with `object_pairs_hook`) runs only when msgspec refuses a line or a cheap
check says a Singer envelope key may be given twice (`decode_message`). Lone UTF-16 surrogates,
which msgspec refuses and the App API's JSON allows, are replaced with U+FFFD and the record kept.
It reads stdin in blocks of what is there (`READ_BYTES` at most) and shows each run of RECORD lines
to the mapper before handling them (`on_records`: one cache query for all their addresses), never
waiting for input while it holds a complete line.

Writer: encodes each message straight into one shared buffer (no per-message syscall, no shared
scratch buffer between threads). Only the reader thread (past `FLUSH_BYTES`, after a STATE, at the
end) and the periodic ticker write it to stdout: the engine thread never blocks on a slow
downstream, which would stall every SMTP conversation in flight.
"""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import IO, Any

import msgspec
from singer_sdk.contrib.msgspec import MsgSpecReader, MsgSpecWriter, decoder, enc_hook
from singer_sdk.singerlib.exceptions import InvalidInputLine
from typing_extensions import override

from mapper_emailverify.engine.errors import UserError

FLUSH_BYTES = 256 * 1024
#: Bytes asked of a binary input at once (one system call on a pipe): the complete lines among them
#: are decoded together, so the mapper can look their addresses up in the cache together.
READ_BYTES = 64 * 1024
#: Lines with lone surrogates named one by one in a WARNING; the rest are only counted.
REPAIR_WARNINGS = 20

# -- decoding one line -----------------------------------------------------------------------------

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


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _key_value(value: Any) -> str:
    if isinstance(value, str):
        return "(not shown: it holds an @)" if "@" in value else _shown(value)
    if value is None or isinstance(value, int | bool):
        return repr(value)
    return "(not shown)"


class InterruptibleInput:
    """Knows whether the reader is blocked in a read, so a signal handler may safely abandon it,
    and stops reading once a signal came or the engine failed in a way only the user can fix."""

    def __init__(self) -> None:
        self.in_read = False
        self.stop_signal: int | None = None
        self.fatal: UserError | None = None

    @property
    def stopping(self) -> bool:
        return self.stop_signal is not None or self.fatal is not None

    def fail(self, error: UserError) -> None:
        """From any thread: the first failure wins; reading stops at the next line."""
        if self.fatal is None:
            self.fatal = error

    def check(self) -> None:
        """Raise what stops the run, if anything does."""
        if self.stop_signal is not None:
            raise Interrupted(self.stop_signal)
        if self.fatal is not None:
            raise self.fatal

    def wrap(self, lines: Iterable[Any]) -> Iterator[Any]:
        iterator = iter(lines)
        while True:
            self.check()
            self.in_read = True
            try:
                line = next(iterator)
            except StopIteration:
                return
            finally:
                self.in_read = False
            self.check()
            yield line


class Interrupted(BaseException):
    """SIGTERM/SIGINT: stop reading; unfinished records and the STATE after them are not written."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class InputError(UserError):
    """Input that is not what a Singer tap writes: one line naming the input line, never its
    content."""


class EmailVerifyReader(MsgSpecReader):
    """msgspec reader over stdin's bytes; its errors name the line and never quote it (it may hold
    addresses)."""

    guard: InterruptibleInput | None = None
    line_number = 0
    #: Size of the line just decoded (the reorder window's byte budget counts it).
    line_bytes = 0
    #: RECORD lines whose lone surrogates were replaced with U+FFFD.
    repaired_records = 0
    #: Shown each run of RECORD messages decoded ahead, before the first of them is handled (the
    #: mapper looks their addresses up in the cache in one query): see `_read_blocks`.
    on_records: Callable[[list[dict[str, Any]]], None] | None = None
    logger = logging.getLogger("mapper-emailverify")

    @override
    def __init__(self) -> None:
        super().__init__()
        #: key_properties by stream, from the SCHEMA messages read: how a record is named in logs.
        self._keys: dict[str, tuple[str, ...]] = {}

    def _numbered(self, lines: Iterable[Any]) -> Iterator[Any]:
        for self.line_number, line in enumerate(lines, start=1):
            yield line

    def input_error(self, problem: str) -> InputError:
        return InputError(f"Input line {self.line_number}: {problem}; check the upstream tap.")

    @override
    def _process_unknown_message(self, message_dict: dict[str, Any]) -> None:
        kind = message_dict.get("type")
        shown = repr(kind) if isinstance(kind, str) and len(kind) <= 40 else "of another kind"
        raise self.input_error(f"unknown Singer message type {shown}")

    @property
    @override
    def default_input(self) -> IO[Any]:  # type: ignore[override]  # bytes, where the SDK reads str
        return sys.stdin.buffer

    @override
    def deserialize_json(self, line: str | bytes) -> dict[str, Any]:
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
            hint = "; is the upstream plugin writing logs to stdout?" if said == NOT_JSON else ""
            kind = "message" if said.startswith("gives") else "line of input"
            raise InvalidInputLine(f"A {kind} {said}{hint}") from None
        if repaired:
            self._repaired(message)
        return message

    def _repaired(self, message: dict[str, Any]) -> None:
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
            self.line_number,
            describe_message(message, keys),
            "; further ones are only counted in the summary" if shown == REPAIR_WARNINGS else "",
        )

    def _remember_keys(self, message: dict[str, Any]) -> None:
        stream, keys = message.get("stream"), message.get("key_properties")
        if isinstance(stream, str) and isinstance(keys, list):
            self._keys[stream] = tuple(k for k in keys if isinstance(k, str))

    @staticmethod
    @override
    def assert_line_requires(line_dict: dict[str, Any], requires: set[str]) -> None:
        # The SDK's message quotes the whole line, which may hold an address.
        if not requires.issubset(line_dict):
            missing = ", ".join(sorted(requires - set(line_dict)))
            kind = line_dict.get("type", "?")
            raise InvalidInputLine(f"A {kind} message is missing required key(s): {missing}")

    @override
    def process_lines(
        self,
        file_input: IO[Any] | None,
        callbacks: dict[str, Callable[[dict[str, Any]], None]],
    ) -> Counter[str]:
        """The SDK's loop (decode, require "type", call back by type, count), with lines numbered
        for errors; from a binary stream (stdin), in blocks (`_read_blocks`)."""
        source: Any = file_input or self.default_input
        on_schema = callbacks.get("SCHEMA")
        if on_schema is not None:

            def schema(message: dict[str, Any]) -> None:
                self._remember_keys(message)
                on_schema(message)

            callbacks = {**callbacks, "SCHEMA": schema}
        stats: Counter[str] = Counter()
        try:
            if callable(getattr(source, "read1", None)) and not isinstance(source, io.TextIOBase):
                self._read_blocks(source, callbacks, stats)
            else:  # text, or any iterable of lines (tests): one line at a time
                lines: Iterable[Any] = self._numbered(source)
                if self.guard is not None:
                    lines = self.guard.wrap(lines)
                for line in lines:
                    self.line_bytes = len(line)
                    self._handle_line(line, callbacks, stats)
        except InvalidInputLine as exc:
            raise self.input_error(str(exc).rstrip(".")) from None
        return stats

    def _handle_line(
        self,
        line: bytes | str,
        callbacks: dict[str, Callable[[dict[str, Any]], None]],
        stats: Counter[str],
    ) -> None:
        """One line, as the SDK's `GenericSingerReader.process_lines` handles it."""
        message = self.deserialize_json(line)
        self.assert_line_requires(message, requires={"type"})
        kind = message["type"]
        callback = callbacks.get(kind)
        if callback is not None:
            callback(message)
        else:
            self._process_unknown_message(message)
        stats[kind] += 1

    def _read_blocks(
        self,
        source: Any,
        callbacks: dict[str, Callable[[dict[str, Any]], None]],
        stats: Counter[str],
    ) -> None:
        """Lines from what one read returns (up to `READ_BYTES`, never waiting for more than the
        next line needs), each handled in order as `_handle_line` would.

        Runs of plain RECORD lines (msgspec decodes them and their keys fit) are decoded ahead and
        shown to `on_records` before the first of them is handled; a line that is anything else
        ends the run and takes the careful way (`deserialize_json`), so errors, repairs and their
        line numbers are what one line at a time gives. A line is only ever read ahead of
        handling when it was already read from the input: the reader never waits for input while
        holding a complete line.
        """
        guard = self.guard
        on_record = callbacks.get("RECORD")
        decode = decoder.decode
        parts: list[bytes] = []  # the start of a line that has no end yet
        while True:
            if guard is not None:
                guard.check()
                guard.in_read = True
            try:
                chunk = source.read1(READ_BYTES)
            finally:
                if guard is not None:
                    guard.in_read = False
            if not chunk:
                if parts:  # the last line, without a line break
                    self.line_number += 1
                    self.line_bytes = sum(map(len, parts))  # as a line without its break
                    if guard is not None:
                        guard.check()
                    self._handle_line(b"".join(parts), callbacks, stats)
                return
            lines = bytes(chunk).split(b"\n")
            if parts:
                parts.append(lines[0])
                if len(lines) == 1:
                    continue
                lines[0] = b"".join(parts)
                parts = []
            tail = lines.pop()
            if tail:
                parts.append(tail)
            count, i = len(lines), 0
            while i < count:
                run: list[dict[str, Any]] = []
                if on_record is not None:
                    while i + len(run) < count:
                        try:
                            message = decode(lines[i + len(run)])
                        except (msgspec.DecodeError, RecursionError, UnicodeError):
                            break
                        if (
                            type(message) is not dict
                            or message.get("type") != "RECORD"
                            or not _RECORD_KEYS.issuperset(message)
                        ):
                            break
                        run.append(message)
                    if run:
                        if self.on_records is not None:
                            self.on_records(run)
                        for message in run:
                            if guard is not None:
                                guard.check()
                            self.line_number += 1
                            self.line_bytes = len(lines[i]) + 1
                            i += 1
                            on_record(message)
                        stats["RECORD"] += len(run)
                if i < count:
                    if guard is not None:
                        guard.check()
                    self.line_number += 1
                    self.line_bytes = len(lines[i]) + 1
                    i += 1
                    self._handle_line(lines[i - 1], callbacks, stats)


class BufferedMsgSpecWriter(MsgSpecWriter):
    """Thread-safe buffered writer; `write_message` takes a Singer message or a raw message dict."""

    def __init__(self, out: IO[bytes] | None = None) -> None:
        super().__init__()
        self._out = out
        self._encoder = msgspec.json.Encoder(enc_hook=enc_hook, decimal_format="number")
        self._buffer = bytearray()
        self._buffer_lock = threading.Lock()
        self._flush_lock = threading.Lock()

    @property
    def out(self) -> IO[bytes]:
        return self._out or sys.stdout.buffer

    @override
    def write_message(self, message: Any) -> None:
        payload = message if isinstance(message, dict) else message.to_dict()
        with self._buffer_lock:
            self._encoder.encode_into(payload, self._buffer, -1)
            self._buffer.extend(b"\n")

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)

    def flush(self) -> None:
        """Write what is buffered; a second flusher waits, so lines keep their order."""
        with self._flush_lock:
            with self._buffer_lock:
                if not self._buffer:
                    return
                data, self._buffer = self._buffer, bytearray()
            out = self.out
            out.write(data)
            out.flush()
