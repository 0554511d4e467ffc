"""The base stream for the Customer.io App API: auth, the shared rate budget, retries and safe errors.

Every request of every stream goes through :meth:`CustomerIOStream._request`, so every attempt (retries
included) takes a token from the tap's one rate limiter, and every error is turned into a message built from
status and path only.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import backoff
import requests
from requests.adapters import HTTPAdapter
from singer_sdk import RESTStream
from singer_sdk.authenticators import BearerTokenAuthenticator
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError

from . import errors
from .retries import RETRYABLE_EXCEPTIONS, RetryPolicy, rate_limited_wait

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

    from singer_sdk.helpers.types import Context

    from .tap import TapCustomerIOPeople

# Statuses worth retrying besides 429 and 5xx.
RETRYABLE_CLIENT_STATUSES = frozenset({HTTPStatus.REQUEST_TIMEOUT, HTTPStatus.TOO_MANY_REQUESTS})


class SyncCancelledError(Exception):
    """The stream stopped (an error elsewhere, or the consumer went away): in-flight workers stand down."""


class CustomerIOStream(RESTStream[Any]):
    """A Customer.io App API stream."""

    _tap: TapCustomerIOPeople

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cancelled = threading.Event()
        pool = int(self.config.get("hydration_concurrency", 8)) + 4
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool)
        self.requests_session.mount("http://", adapter)
        self.requests_session.mount("https://", adapter)

    # ------------------------------------------------------------------ where and who
    @property
    def url_base(self) -> str:
        return f"{self._tap.api_origin}/v1"

    @functools.cached_property
    def authenticator(self) -> BearerTokenAuthenticator:
        return BearerTokenAuthenticator(token=self.config["app_api_key"])

    @property
    def timeout(self) -> float:  # type: ignore[override]
        return float(self.config.get("request_timeout", 60))

    def get_new_paginator(self) -> None:
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
    def retrying_request(
        self,
    ) -> Callable[[requests.PreparedRequest, Context | None], requests.Response]:
        return self.request_decorator(self._request)

    def _request(
        self, prepared_request: requests.PreparedRequest, context: Context | None
    ) -> requests.Response:
        """One attempt: wait for a slot in the shared budget, send, classify the answer."""
        if self.cancelled.is_set():
            raise SyncCancelledError(self.name)
        limiter = self._tap.rate_limiter
        ticket = limiter.acquire()
        self._tap.stats.count("requests")
        answered = False
        try:
            response = super()._request(prepared_request, context)
            answered = True
            return response
        except RetriableAPIError as exc:
            wait = rate_limited_wait(exc)
            if wait is not None:
                self._tap.stats.count("rate_limited")
                limiter.pause(wait)  # every thread holds back, not just this one
            raise
        finally:
            endpoint = f"{prepared_request.method} {errors.request_path(prepared_request)}"
            limiter.release(ticket, endpoint, ok=answered)

    def validate_response(self, response: requests.Response) -> None:
        status = response.status_code
        if status < HTTPStatus.BAD_REQUEST:
            return
        message = self.response_error_message(response)
        if status in RETRYABLE_CLIENT_STATUSES or status >= HTTPStatus.INTERNAL_SERVER_ERROR:
            raise RetriableAPIError(message, response)
        if status == HTTPStatus.UNAUTHORIZED:
            raise errors.AuthenticationError(
                errors.authentication_message(self._tap.region, self._tap.api_origin)
            )
        if status == HTTPStatus.FORBIDDEN:
            raise errors.ForbiddenError(errors.forbidden_message(errors.request_path(response)))
        if status == HTTPStatus.NOT_FOUND:
            raise errors.NotFoundError(message)
        raise FatalAPIError(message)

    def response_error_message(self, response: requests.Response) -> str:
        """Status and path only: Customer.io error bodies may echo email addresses."""
        return errors.http_error_message(response)

    # ------------------------------------------------------------------ retries
    def request_decorator(
        self, func: Callable[..., requests.Response]
    ) -> Callable[..., requests.Response]:
        """Retry transient failures (bounded in tries and time), then fail with one clear line."""
        max_time = float(self.config.get("max_retry_seconds", 300))
        retrying = backoff.on_exception(
            self.backoff_wait_generator,
            RETRYABLE_EXCEPTIONS,
            max_tries=self.backoff_max_tries,
            max_time=max_time,
            on_backoff=self.backoff_handler,
            jitter=self.backoff_jitter,
            giveup=errors.is_certificate_failure,  # retrying cannot help
            logger=None,
        )(func)

        @functools.wraps(func)
        def request(
            prepared: requests.PreparedRequest, context: Context | None
        ) -> requests.Response:
            started = time.monotonic()
            try:
                return retrying(prepared, context)
            except RETRYABLE_EXCEPTIONS as exc:
                if errors.is_certificate_failure(exc):
                    raise errors.TlsError(errors.tls_message(self._tap.api_origin)) from None
                raise errors.RetriesExhaustedError(
                    errors.retries_exhausted_message(exc, time.monotonic() - started)
                ) from exc

        return request

    def backoff_wait_generator(self) -> Generator[float, BaseException, None]:
        return RetryPolicy().waits()

    def backoff_max_tries(self) -> int:
        return int(self.config.get("max_retries", 8)) + 1

    def backoff_jitter(self, value: float) -> float:
        """RetryPolicy jitters already, and a 429 must never wait less than Retry-After."""
        return value

    def backoff_handler(self, details: Any) -> None:
        self._tap.stats.count("retries")
        exc = details.get("exception")
        response = getattr(exc, "response", None)
        if isinstance(response, requests.Response):
            what, path = errors.status_summary(response), errors.request_path(response)
        else:
            what, path = type(exc).__name__, errors.request_path(getattr(exc, "request", None))
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
