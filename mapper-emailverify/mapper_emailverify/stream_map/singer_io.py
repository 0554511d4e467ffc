"""The SDK's msgspec reader and writer, adapted to a mapper whose output is written from two
threads.

Reader: decodes bytes from stdin (no text layer), never echoes an unparsable line (it may hold an
address) and lets the mapper interrupt a blocking read on SIGTERM. Writer: encodes each message
straight into one shared buffer (no per-message syscall, no shared scratch buffer between threads).
Only the reader thread (past `FLUSH_BYTES`, after a STATE, at the end) and the periodic ticker write
it to stdout: the engine thread never blocks on a slow downstream, which would stall every SMTP
conversation in flight.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

import msgspec
from singer_sdk.contrib.msgspec import MsgSpecReader, MsgSpecWriter, decoder, enc_hook
from singer_sdk.singerlib.exceptions import InvalidInputLine
from typing_extensions import override

from mapper_emailverify.engine.errors import UserError

FLUSH_BYTES = 256 * 1024


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
        try:
            message: dict[str, Any] = decoder.decode(line)
            return message
        except msgspec.DecodeError:
            raise InvalidInputLine(
                "A line of input is not valid JSON; is the upstream plugin writing logs to stdout?"
            ) from None

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
        lines: Iterable[Any] = self._numbered(file_input or self.default_input)
        if self.guard is not None:
            lines = self.guard.wrap(lines)
        try:
            return super().process_lines(lines, callbacks)  # type: ignore[arg-type]  # an iterator of lines, not a file: the SDK only iterates it
        except InvalidInputLine as exc:
            raise self.input_error(str(exc).rstrip(".")) from None


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
