"""When to try an HTTP request again, and how long to wait first.

Exponential backoff with jitter (x[1, 2), the Segment / Customer.io Node client formula), capped per
wait; a server's Retry-After wins over the computed wait, up to the same cap. `parse_retry_after`
and `is_certificate_failure` are the same in every plugin (CONTRIBUTING.md, "Conventions").
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import random
import ssl
import time
from dataclasses import dataclass, field

import httpx

RETRY_STATUSES = frozenset({408, 429})
_MAX_CHAIN = 20  # exceptions followed through arguments, reasons, causes and contexts


def is_retryable_status(status: int) -> bool:
    return status in RETRY_STATUSES or 500 <= status <= 599


def is_retryable_error(exc: BaseException) -> bool:
    """Timeouts, refused or dropped connections, broken responses: the request may be sent again."""
    return isinstance(exc, httpx.TransportError) and not is_certificate_failure(exc)


def is_certificate_failure(exc: BaseException) -> bool:
    """A failed TLS certificate check anywhere behind `exc` (retrying cannot help).

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


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """`Retry-After` in seconds: delta-seconds or an HTTP date (`now` is a Unix time, default now).

    None when absent or unreadable (negative, NaN, infinite, garbage); a date in the past is 0.
    Not capped here: the caller caps with its own setting (`RetryPolicy.max_seconds`).
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
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP date is always GMT
            when = when.replace(tzinfo=dt.UTC)
        return max(0.0, when.timestamp() - (time.time() if now is None else now))
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


@dataclass
class RetryPolicy:
    max_retries: int = 8
    base_seconds: float = 0.5
    max_seconds: float = 30.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Wait before retry number ``attempt`` (0-based)."""
        if retry_after is not None:
            # Jitter, so parallel requests told the same Retry-After do not return in lockstep.
            return min(retry_after, self.max_seconds) + self.rng.uniform(
                0, min(0.25, self.base_seconds)
            )
        backoff = self.base_seconds * (2.0 ** min(attempt, 30))
        return min(backoff * self.rng.uniform(1.0, 2.0), self.max_seconds)

    def allows(self, attempt: int) -> bool:
        return attempt < self.max_retries
