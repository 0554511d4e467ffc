"""Errors the user can act on, phrased in one line, never carrying a key, an address or a response body.

Customer.io error bodies may echo the email addresses of the request, so messages are built from the status
code, the reason phrase and the URL *path* only (paths hold cio_ids and segment ids, never addresses).
"""

from __future__ import annotations

import ssl
from http import HTTPStatus
from urllib.parse import urlsplit

import requests
from singer_sdk.exceptions import FatalAPIError, FatalSyncError


class ActionableError(Exception):
    """An error whose message tells the user what to do: the CLI prints it as one line, no traceback."""


class AuthenticationError(ActionableError, FatalAPIError):
    """401: wrong key type, revoked key, or the key's workspace lives in the other region."""


class ForbiddenError(ActionableError, FatalAPIError):
    """403: the key lacks a scope, or an IP allowlist rejects this host."""


class NotFoundError(FatalAPIError):
    """404 for a path the tap asked for."""


class SegmentNotFoundError(ActionableError, FatalAPIError):
    """A configured segment id does not exist in the workspace."""


class StuckCursorError(ActionableError, FatalSyncError):
    """The search endpoint handed back a cursor or page it had already given: paging would never end."""


class UnexpectedResponseError(ActionableError, FatalAPIError):
    """The API answered in a shape this tap cannot read."""


class RetriesExhaustedError(ActionableError, FatalAPIError):
    """A transient failure outlasted every retry."""


class TlsError(ActionableError, FatalAPIError):
    """The server's TLS certificate could not be verified: never retried, never bypassed."""


def request_path(response_or_request: requests.Response | requests.PreparedRequest | None) -> str:
    """The URL path of a request, without the query string (it is all the messages ever show)."""
    url = getattr(response_or_request, "url", None) or ""
    return urlsplit(url).path or "/"


def status_summary(response: requests.Response) -> str:
    """``"503 Service Unavailable"``: the status line, nothing from the body."""
    try:
        reason = HTTPStatus(response.status_code).phrase
    except ValueError:
        reason = response.reason or ""
    return f"{response.status_code} {reason}".strip()


def authentication_message(region: str, api_origin: str) -> str:
    return (
        f"Customer.io answered 401 Unauthorized from {api_origin}: check that app_api_key is an App API key "
        f"(Account Settings > API Credentials > App API Keys, not a Track or Pipelines key) and that "
        f"region '{region}' is the region of its workspace."
    )


def forbidden_message(path: str) -> str:
    return (
        f"Customer.io answered 403 Forbidden for {path}: use an App API key whose scope allows reading People "
        f"and segments, and check the workspace's IP allowlist."
    )


def segment_not_found_message(segment_id: int) -> str:
    return (
        f"segment {segment_id} does not exist in this workspace: remove it from segment_ids "
        f"(the id is the number in the segment's URL in Customer.io) or check region."
    )


def http_error_message(response: requests.Response) -> str:
    """A generic one-line description of an HTTP error, safe to log."""
    method = response.request.method if response.request is not None else "request"
    return f"Customer.io App API answered {status_summary(response)} for {method} {request_path(response)}"


def is_certificate_failure(exc: BaseException) -> bool:
    """True when ``exc`` comes from a failed certificate check (not a handshake cut short, which is retried).

    requests wraps urllib3's error, which wraps the ssl module's: follow arguments, reasons and causes.
    """
    pending: list[object] = [exc]
    seen: set[int] = set()
    while pending and len(seen) < 20:
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


def tls_message(api_origin: str) -> str:
    return (
        f"the TLS certificate of {api_origin} could not be verified: check api_url, and if a proxy "
        f"inspects TLS, point REQUESTS_CA_BUNDLE at its CA certificate (verification is never turned off)."
    )


def retries_exhausted_message(exc: BaseException, elapsed: float) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, requests.Response):
        last, path = status_summary(response), request_path(response)
    else:
        last, path = type(exc).__name__, request_path(getattr(exc, "request", None))
    return (
        f"Customer.io App API request to {path} still failing after retrying for {elapsed:.0f} s "
        f"(last: {last}); Customer.io may be degraded: try again later or raise max_retries."
    )
