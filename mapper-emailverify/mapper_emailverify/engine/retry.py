"""When a remote API may be asked again, and what stops retrying at once (CONTRIBUTING.md,
"Conventions": the same two functions in every plugin)."""

from __future__ import annotations

import math
import ssl
import time
from datetime import UTC
from email.utils import parsedate_to_datetime

_MAX_CHAIN = 20  # exceptions followed through args, reasons, causes and contexts


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """`Retry-After` in seconds: delta-seconds or an HTTP date (RFC 9110 10.2.3).

    None when absent or unreadable (negative, NaN, infinite, garbage); a date in the past is 0.
    Not capped: each caller caps with its own setting.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP date is always GMT
            when = when.replace(tzinfo=UTC)
        return max(0.0, when.timestamp() - (time.time() if now is None else now))
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def is_certificate_failure(exc: BaseException) -> bool:
    """True when a TLS certificate check failed anywhere behind `exc`.

    HTTP clients wrap the ssl module's error in their own (httpx in `ConnectError`, requests in
    `SSLError(MaxRetryError(reason=...))`): follow arguments, `reason`, causes and contexts.
    """
    pending: list[object] = [exc]
    seen: set[int] = set()
    while pending and len(seen) < _MAX_CHAIN:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        pending += [
            *current.args,
            getattr(current, "reason", None),
            current.__cause__,
            current.__context__,
        ]
    return False
