"""How long to wait before retrying a failed App API request.

A 429 tells us exactly when to come back (``Retry-After``, seconds or an HTTP date); everything else that is
worth retrying (5xx, timeouts, dropped connections) backs off exponentially with jitter, so that
concurrent hydration threads do not retry in lock-step.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus

import requests
from singer_sdk.exceptions import RetriableAPIError

# Exceptions worth another attempt: what the SDK retries, plus the bare socket errors urllib3 can leak.
RETRYABLE_EXCEPTIONS: tuple[type[BaseException], ...] = (
    RetriableAPIError,
    ConnectionResetError,
    requests.exceptions.Timeout,
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    TimeoutError,
)

RATE_LIMITED_FALLBACK_SECONDS = (
    1.0  # 429 without Retry-After (e.g. a daily quota): still pause, then back off
)
MAX_RETRY_AFTER_SECONDS = 120.0


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), or None if absent/garbled."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def rate_limited_wait(exc: BaseException) -> float | None:
    """The server-mandated wait when ``exc`` is a 429, else None."""
    response = getattr(exc, "response", None)
    if not isinstance(exc, RetriableAPIError) or response is None:
        return None
    if response.status_code != HTTPStatus.TOO_MANY_REQUESTS:
        return None
    wait = parse_retry_after(response.headers.get("Retry-After"))
    return RATE_LIMITED_FALLBACK_SECONDS if wait is None else wait


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

    def wait(self, exc: BaseException, attempt: int) -> float:
        """Seconds to sleep after failed attempt number ``attempt`` (1-based)."""
        server_wait = rate_limited_wait(exc)
        if server_wait is not None:
            # A little jitter on top (never below what the server asked) spreads the threads' comebacks.
            return server_wait + self._uniform(0.0, min(0.25, 0.1 + server_wait / 10))
        ceiling = min(self.cap, self.base * 2 ** (attempt - 1))
        return self._uniform(ceiling / 2, ceiling)

    def waits(self) -> Generator[float, BaseException, None]:
        """A wait generator for ``backoff.on_exception``: it is sent each failure and yields the wait."""
        attempt = 0
        exc = yield  # type: ignore[misc]  # primed by backoff with None
        while True:
            attempt += 1
            exc = yield self.wait(exc, attempt)
