"""When to try an HTTP request again, and how long to wait first.

Exponential backoff with jitter (x[1, 2), the Segment / Customer.io Node client formula), capped per
wait; a server's Retry-After wins over the computed wait, up to the same cap.
"""

from __future__ import annotations

import email.utils
import random
import ssl
import time
from dataclasses import dataclass, field

import httpx

RETRY_STATUSES = frozenset({408, 429})


def is_retryable_status(status: int) -> bool:
    return status in RETRY_STATUSES or 500 <= status <= 599


def is_retryable_error(exc: BaseException) -> bool:
    """Timeouts, refused or dropped connections, broken responses: the request may be sent again."""
    return isinstance(exc, httpx.TransportError) and not is_certificate_failure(exc)


def is_certificate_failure(exc: BaseException) -> bool:
    """A failed TLS certificate check (retrying cannot help; verification is never turned off)."""
    pending: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while pending and len(seen) < 20:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        pending += [current.__cause__, current.__context__]
    return False


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After as seconds (delta-seconds or HTTP-date), None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


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
        backoff = self.base_seconds * (2 ** min(attempt, 30))
        return min(backoff * self.rng.uniform(1.0, 2.0), self.max_seconds)

    def allows(self, attempt: int) -> bool:
        return attempt < self.max_retries
