"""Writes that Customer.io rejects for good.

They go to a JSONL file with the reason, or to the log without personal data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import threading
from pathlib import Path
from typing import Any

from .identify import Identifier

_EMAIL = re.compile(r"[^\s\"'<>(),;:]+@[^\s\"'<>(),;:]+")


def redact(text: str) -> str:
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
    def __init__(self, path: str | None, logger: logging.Logger) -> None:
        self.path = Path(path).expanduser() if path else None
        self.logger = logger
        self._lock = threading.Lock()

    def add(
        self,
        *,
        stream: str,
        reason: str,
        identifier: Identifier | None = None,
        cio_id: str | None = None,
        message: dict[str, Any] | None = None,
    ) -> None:
        if self.path is None:
            self.logger.warning(
                "Dead letter (stream %s, cio_id %s, %s): %s",
                stream,
                cio_id or "-",
                safe_identifier(identifier),
                redact(reason),
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
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line)
