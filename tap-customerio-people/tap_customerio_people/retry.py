"""How long to wait before retrying a failed App API request, and what is never retried.

A 429 tells us exactly when to come back (``Retry-After``, seconds or an HTTP date); everything
else that is worth retrying (5xx, timeouts, dropped connections) backs off exponentially with
jitter, so that concurrent hydration threads do not retry in lock-step. A certificate that fails
verification is a configuration problem: retrying cannot help.

`parse_retry_after` and `is_certificate_failure` are the same in every plugin (CONTRIBUTING.md,
"Conventions").
"""

from __future__ import annotations

import math
import random
import ssl
import time
from collections.abc import Callable, Generator
from datetime import UTC
from email.utils import parsedate_to_datetime
from http import HTTPStatus

import requests
from singer_sdk.exceptions import RetriableAPIError

from .bounded import AnswerTooLarge

# Exceptions worth another attempt: what the SDK retries, plus bare socket errors urllib3 can leak.
RETRYABLE_EXCEPTIONS: tuple[type[Exception], ...] = (
    RetriableAPIError,
    ConnectionResetError,
    requests.exceptions.Timeout,
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    AnswerTooLarge,  # a broken answer too (requests.Timeout covers a deadline passed)
    TimeoutError,
)

RATE_LIMITED_FALLBACK_SECONDS = 1.0  # 429 without Retry-After (a daily quota): pause, back off
MAX_RETRY_AFTER_SECONDS = 120.0  # the longest a 429 may hold the whole run back at once
_MAX_CHAIN = 20  # exceptions followed through args, reasons, causes and contexts


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date (RFC 9110 10.2.3).

    ``now`` is a Unix time (default: the clock). None when absent or unreadable (negative, NaN,
    infinite, garbage); a date in the past is 0. Not capped: each caller caps it.
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
    """True when a TLS certificate check failed anywhere behind ``exc``.

    Not a handshake cut short, which is retried. requests wraps urllib3's error, which wraps the
    ssl module's: follow arguments, ``reason``, causes and contexts.
    """
    pending: list[object] = [exc]
    seen: set[int] = set()
    while pending and len(seen) < _MAX_CHAIN:
        current = pending.pop()
        if id(current) in seen or not isinstance(current, BaseException):
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


def rate_limited_wait(exc: BaseException | None) -> float | None:
    """The server-mandated wait (capped) when ``exc`` is a 429, else None."""
    response = getattr(exc, "response", None)
    if not isinstance(exc, RetriableAPIError) or response is None:
        return None
    if response.status_code != HTTPStatus.TOO_MANY_REQUESTS:
        return None
    wait = parse_retry_after(response.headers.get("Retry-After"))
    if wait is None:
        return RATE_LIMITED_FALLBACK_SECONDS
    return min(wait, MAX_RETRY_AFTER_SECONDS)


class RetryPolicy:
    """Exponential backoff with jitter for transient failures; Retry-After for 429."""

    def __init__(
        self,
        *,
        base: float = 0.5,
        cap: float = 30.0,
        rng: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.base = base
        self.cap = cap
        self._uniform = rng

    def wait(self, exc: BaseException | None, attempt: int) -> float:
        """Seconds to sleep after failed attempt number ``attempt`` (1-based)."""
        server_wait = rate_limited_wait(exc)
        if server_wait is not None:
            # A little jitter on top (never below what the server asked) spreads the comebacks.
            return server_wait + self._uniform(0.0, min(0.25, 0.1 + server_wait / 10))
        ceiling = min(self.cap, self.base * 2 ** (attempt - 1))
        return self._uniform(ceiling / 2, ceiling)

    def waits(self) -> Generator[float, BaseException | None, None]:
        """A wait generator for ``backoff.on_exception``: it is sent each failure, yields the wait.

        backoff primes it with ``send(None)`` and discards what that first ``send`` yields.
        """
        attempt = 0
        exc = yield 0.0
        while True:
            attempt += 1
            exc = yield self.wait(exc, attempt)
