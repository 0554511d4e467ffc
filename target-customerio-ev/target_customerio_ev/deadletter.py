"""Writes that Customer.io rejects for good.

They go to a JSONL file with the reason, or to the log without personal data. A reason is the
API's words: the credentials it may quote are redacted and it is cut to `MAX_REASON` characters
(`errors.redact`, `errors.one_line`), in the file as in the log. A file that cannot be written
(a full disk, a read-only path) stops the run with `DeadLetterError`: the rejected writes would
otherwise be lost without a trace while STATE moved past them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import threading
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import MAX_MESSAGE, DeliveryError, one_line, redact
from .identify import Identifier

MAX_REASON = MAX_MESSAGE  # characters of one reason, once redacted

_EMAIL = re.compile(r"[^\s\"'<>(),;:]+@[^\s\"'<>(),;:]+")
#: Distinct reasons counted for the run report (`report_path`); later new ones count as "other".
MAX_REASONS = 50
OTHER_REASONS = "(other reasons)"


class DeadLetterError(DeliveryError):
    """The dead-letter file cannot be written: rejected writes would be dropped silently."""


def mask_emails(text: str) -> str:
    """Reasons may quote the address back; logs must not."""
    return _EMAIL.sub("<email>", text)


def safe_identifier(identifier: Identifier | None) -> str:
    """An identifier fit for an INFO log: emails become a short hash."""
    if identifier is None:
        return "none"
    if identifier.kind == "email" or "@" in identifier.value:
        digest = hashlib.sha256(identifier.value.lower().encode()).hexdigest()[:12]
        return f"{identifier.kind}:sha256:{digest}"
    return f"{identifier.kind}:{identifier.value}"


class DeadLetters:
    def __init__(
        self, path: str | None, logger: logging.Logger, secrets: Iterable[str] = ()
    ) -> None:
        self.path = Path(path).expanduser() if path else None
        self.logger = logger
        self.secrets = tuple(s for s in secrets if s)
        self._lock = threading.Lock()
        #: Rejections by reason, addresses masked: the run report's, never the file's.
        self._reasons: Counter[str] = Counter()

    def reasons(self) -> list[tuple[str, int]]:
        """Rejections by reason (addresses masked), most frequent first."""
        with self._lock:
            return self._reasons.most_common()

    def _count(self, reason: str) -> None:
        shown = mask_emails(reason)
        with self._lock:
            if shown not in self._reasons and len(self._reasons) >= MAX_REASONS:
                shown = OTHER_REASONS
            self._reasons[shown] += 1

    def add(
        self,
        *,
        stream: str,
        reason: str,
        identifier: Identifier | None = None,
        cio_id: str | None = None,
        message: dict[str, Any] | None = None,
    ) -> None:
        """One rejected write, kept (or logged); `DeadLetterError` when the file cannot take it."""
        reason = one_line(redact(reason, self.secrets))
        self._count(reason)
        if self.path is None:
            self.logger.warning(
                "Dead letter (stream %s, cio_id %s, %s): %s",
                stream,
                cio_id or "-",
                safe_identifier(identifier),
                mask_emails(reason),
            )
            return
        row = {
            "time": dt.datetime.now(dt.UTC).isoformat(),
            "stream": stream,
            "reason": reason,
            "identifier": {"kind": identifier.kind, "value": identifier.value}
            if identifier
            else None,
            "cio_id": cio_id,
            "message": message,
        }
        line = json.dumps(row, default=str, ensure_ascii=False) + "\n"
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(line)
            except OSError as exc:
                why = exc.strerror or type(exc).__name__
                raise DeadLetterError(
                    f"cannot write dead_letter_path {self.path} ({why}): rejected writes cannot "
                    "be kept, so the run stopped; free the space or point dead_letter_path at a "
                    "writable file, then rerun (STATE was not advanced)."
                ) from None
