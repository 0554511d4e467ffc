"""Singer input that is not what a Singer tap writes stops the run with one line naming the line.

The SDK's msgspec reader quotes an unparsable line in its error and logs it at ERROR, and the line
may hold an email address; its other input errors end in a traceback without saying where. Here
every problem is an `InputError` naming the line number and the problem, never the line's content.

Reading is also where a run stops early (an error, a termination signal): `on_stop` lets the
target close its sender and log its summary then, since the SDK's `listen` cannot be overridden.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import IO, Any

import msgspec
from singer_sdk.contrib.msgspec import MsgSpecReader, decoder
from singer_sdk.exceptions import RecordsWithoutSchemaException
from typing_extensions import override

from .errors import UserError

HINT = "check the upstream tap or mapper"


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
        return stats

    @staticmethod
    def _decode(line: str | bytes, number: int) -> dict[str, Any]:
        try:
            message = decoder.decode(line)
        except msgspec.DecodeError:
            raise InputError(
                f"Input line {number} is not valid JSON; "
                "is the upstream plugin writing logs to stdout?"
            ) from None
        if not isinstance(message, dict):
            raise InputError(f"Input line {number} is not a JSON object; {HINT}.")
        return message


def _shown(value: Any) -> str:
    """A message type or stream name, shortened: never a whole value from the input."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
