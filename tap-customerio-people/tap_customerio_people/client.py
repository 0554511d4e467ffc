"""The base stream for the Customer.io App API: auth, the shared rate budget, retries, safe errors.

Every request of every stream, retries included, is one attempt of `CustomerIOStream.budgeted`
(which `request_decorator` wraps around the SDK's sender): each attempt takes a token from the
run's one rate limiter, and every error is turned into a message built from status and path only.
Every request is bounded (`bounded.BoundedAdapter`): `request_timeout` is its whole deadline, and
at most `bounded.MAX_ANSWER_BYTES` of answer are read.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol

import backoff
import requests
from singer_sdk import RESTStream
from singer_sdk.authenticators import BearerTokenAuthenticator
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from typing_extensions import override

from . import bounded, errors, settings
from .retry import RETRYABLE_EXCEPTIONS, RetryPolicy, is_certificate_failure, rate_limited_wait

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

    from backoff.types import Details
    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context
    from singer_sdk.pagination import BaseAPIPaginator

    from .ratelimit import RateLimiter
    from .stats import RunStats

    RequestFunc = Callable[[requests.PreparedRequest, Context | None], requests.Response]

# Statuses worth retrying besides 5xx.
RETRYABLE_CLIENT_STATUSES = frozenset({HTTPStatus.REQUEST_TIMEOUT, HTTPStatus.TOO_MANY_REQUESTS})
EXTRA_POOL_CONNECTIONS = 4  # beyond the hydration workers: the search thread, a retry or two


class ApiRun(Protocol):
    """What every stream of one run shares (the tap provides it): one budget, one set of counts."""

    @property
    def rate_limiter(self) -> RateLimiter: ...

    @property
    def stats(self) -> RunStats: ...

    @property
    def region(self) -> str: ...

    @property
    def api_origin(self) -> str: ...


class SyncCancelledError(Exception):
    """The stream stopped (an error elsewhere, or the consumer went away): workers stand down."""


class CustomerIOStream(RESTStream[Any]):
    """A Customer.io App API stream."""

    def __init__(self, tap: Tap, *, run: ApiRun) -> None:
        super().__init__(tap)
        self.run = run
        self.cancelled = threading.Event()
        pool = settings.integer(self.config, "hydration_concurrency") + EXTRA_POOL_CONNECTIONS
        adapter = bounded.BoundedAdapter(pool_connections=2, pool_maxsize=pool)
        self.requests_session.mount("http://", adapter)
        self.requests_session.mount("https://", adapter)

    # ------------------------------------------------------------------ where and who
    @property
    @override
    def url_base(self) -> str:
        return f"{self.run.api_origin}/v1"

    @functools.cached_property
    @override
    def authenticator(self) -> BearerTokenAuthenticator:
        return BearerTokenAuthenticator(token=self.config["app_api_key"])

    @property
    @override
    def timeout(self) -> float:  # type: ignore[override]  # SDK says int; requests takes float s
        return settings.number(self.config, "request_timeout")

    @override
    def get_new_paginator(self) -> BaseAPIPaginator[Any] | None:
        """Single-page by default; streams that page say how."""
        return None

    # ------------------------------------------------------------------ sending
    def send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        context: Context | None = None,
    ) -> requests.Response:
        """Send one App API request (rate-limited, retried) outside the SDK's paging loop."""
        prepared = self.build_prepared_request(
            method=method,
            url=f"{self.url_base}{path}",
            params=params or {},
            json=json,
            headers=self.http_headers,
        )
        return self.retrying_request(prepared, context)

    @functools.cached_property
    def retrying_request(self) -> RequestFunc:
        """The SDK's one-attempt sender, wrapped the way `request_records` wraps it."""
        return self.request_decorator(self._request)

    def budgeted(self, func: RequestFunc) -> RequestFunc:
        """One attempt of ``func``: wait for a slot in the shared budget, send, classify."""

        @functools.wraps(func)
        def attempt(
            prepared_request: requests.PreparedRequest, context: Context | None
        ) -> requests.Response:
            if self.cancelled.is_set():
                raise SyncCancelledError(self.name)
            limiter = self.run.rate_limiter
            ticket = limiter.acquire()
            self.run.stats.count("requests")
            answered = False
            try:
                response = func(prepared_request, context)
                answered = True
                return response
            except RetriableAPIError as exc:
                wait = rate_limited_wait(exc)
                if wait is not None:
                    self.run.stats.count("rate_limited")
                    limiter.pause(wait)  # every thread holds back, not just this one
                raise
            finally:
                endpoint = f"{prepared_request.method} {errors.request_path(prepared_request)}"
                limiter.release(ticket, endpoint, ok=answered)

        return attempt

    @override
    def validate_response(self, response: requests.Response) -> None:
        status = response.status_code
        if status < HTTPStatus.BAD_REQUEST:
            return
        message = self.response_error_message(response)
        if status in RETRYABLE_CLIENT_STATUSES or status >= HTTPStatus.INTERNAL_SERVER_ERROR:
            raise RetriableAPIError(message, response)
        if status == HTTPStatus.UNAUTHORIZED:
            raise errors.AuthenticationError(
                errors.authentication_message(self.run.region, self.run.api_origin)
            )
        if status == HTTPStatus.FORBIDDEN:
            raise errors.ForbiddenError(errors.forbidden_message(errors.request_path(response)))
        if status == HTTPStatus.NOT_FOUND:
            raise errors.NotFoundError(message)
        raise FatalAPIError(message)

    @override
    def response_error_message(self, response: requests.Response) -> str:
        """Status and path only: Customer.io error bodies may echo email addresses."""
        return errors.http_error_message(response)

    # ------------------------------------------------------------------ retries
    @override
    def request_decorator(self, func: RequestFunc) -> RequestFunc:
        """Budget every attempt, retry transient failures (bounded), then fail in one clear line.

        Retries are bounded in tries (max_retries) and in time (max_retry_seconds).
        """
        max_time = settings.number(self.config, "max_retry_seconds")
        retrying = backoff.on_exception(
            self.backoff_wait_generator,
            RETRYABLE_EXCEPTIONS,
            max_tries=self.backoff_max_tries,
            max_time=max_time,
            on_backoff=self.backoff_handler,
            jitter=self.backoff_jitter,
            giveup=is_certificate_failure,  # retrying cannot help
            logger=None,
        )(self.budgeted(func))

        @functools.wraps(func)
        def request(
            prepared: requests.PreparedRequest, context: Context | None
        ) -> requests.Response:
            started = time.monotonic()
            try:
                return retrying(prepared, context)
            except RETRYABLE_EXCEPTIONS as exc:
                if is_certificate_failure(exc):
                    raise errors.CertificateError(
                        errors.certificate_message(self.run.api_origin)
                    ) from None
                raise errors.RetriesExhaustedError(
                    errors.retries_exhausted_message(exc, time.monotonic() - started)
                ) from exc

        return request

    @override
    def backoff_wait_generator(self) -> Generator[float, BaseException | None, None]:
        return RetryPolicy().waits()

    @override
    def backoff_max_tries(self) -> int:
        return settings.integer(self.config, "max_retries") + 1

    @override
    def backoff_jitter(self, value: float) -> float:
        """RetryPolicy jitters already, and a 429 must never wait less than Retry-After."""
        return value

    @override
    def backoff_handler(self, details: Details) -> None:
        self.run.stats.count("retries")
        exc = details.get("exception")
        response = getattr(exc, "response", None)
        if isinstance(response, requests.Response):
            what, path = errors.status_summary(response), errors.request_path(response)
        else:
            what = errors.failure_summary(exc)
            path = errors.request_path(getattr(exc, "request", None))
        level = (
            logging.INFO
            if isinstance(exc, RetriableAPIError)
            and response is not None
            and response.status_code == HTTPStatus.TOO_MANY_REQUESTS
            else logging.WARNING
        )
        self.logger.log(
            level,
            "Retrying %s in %.1f s (attempt %d failed: %s)",
            path,
            details.get("wait", 0.0),
            details.get("tries", 0),
            what,
        )
