"""Errors the user can act on, in one line, never carrying a key, an address or a response body.

The same three classes and three functions exist in each plugin (CONTRIBUTING.md, "Conventions"):
`UserError` is the base of every failure the user can fix, and `exit_with` is the one place that
turns one into what the user sees (the tap's ``invoke`` calls it).

Customer.io error bodies may echo the email addresses of the request, so messages are built from
the status code, the reason phrase and the URL *path* only (paths hold cio_ids and segment ids,
never addresses). A reason phrase that is not the standard one is the server's own words: it goes
through `redact` (an API may quote the Authorization header back) and is cut short.
"""

from __future__ import annotations

import base64
import itertools
import logging
import re
import sys
from collections.abc import Iterable
from http import HTTPStatus
from typing import NoReturn
from urllib.parse import quote, urlsplit

import requests
from singer_sdk.exceptions import FatalAPIError, FatalSyncError

from .bounded import AnswerTooLarge, DeadlineExceeded

MAX_MESSAGE = 500  # characters of one error line
MAX_PHRASE = 120  # characters of a server's own reason phrase
REDACTED = "[redacted]"
MIN_SECRET = 6  # characters: a shorter "secret" (a test's "k") is not searched for as it is
# An Authorization header's value (its scheme and credential), as a header line or a JSON field.
_AUTHORIZATION = re.compile(
    r"""(?i)((?:proxy-)?authorization["']?\s*[:=]\s*["']?)(?:[a-z]+\s+)?[^\s"',;}]+"""
)
# A credential after its scheme, anywhere (a header quoted without its name).
_SCHEME_TOKEN = re.compile(r"(?i)\b(basic|bearer)(\s+)[A-Za-z0-9._~+/=-]{6,}")
# A `key=...` parameter (api_key, apikey, token, password, secret...), as a query string has it.
_KEY_PARAMETER = re.compile(r"(?i)\b([\w-]*(?:key|token|secret|password))=[^&\s\"'#,;]+")


class UserError(Exception):
    """A failure the user can fix; ``str(error)`` says how, in one line, without a traceback."""

    exit_code = 1


class ConfigError(UserError):
    """A setting is wrong."""


# The singer-sdk mixins (FatalAPIError, FatalSyncError) tell the SDK not to retry or go on.


class CertificateError(UserError, FatalAPIError):
    """The server's TLS certificate could not be verified: never retried, never bypassed."""


class AuthenticationError(ConfigError, FatalAPIError):
    """401: wrong key type, revoked key, or the key's workspace lives in the other region."""


class ForbiddenError(UserError, FatalAPIError):
    """403: the key lacks a scope, or an IP allowlist rejects this host."""


class NotFoundError(FatalAPIError):
    """404 for a path the tap asked for."""


class SegmentNotFoundError(ConfigError, FatalAPIError):
    """A configured segment id does not exist in the workspace."""


class StuckCursorError(UserError, FatalSyncError):
    """The search endpoint handed back a cursor or page it had already given: paging never ends."""


class UnhydratedPeopleError(UserError, FatalSyncError):
    """Listed People could not be read by cio_id in either form: records would be lost."""


class UnexpectedResponseError(UserError, FatalAPIError):
    """The API answered in a shape this tap cannot read."""


class RetriesExhaustedError(UserError, FatalAPIError):
    """A transient failure outlasted every retry."""


def one_line(text: str) -> str:
    """``text`` on one line (whitespace collapsed) and at most `MAX_MESSAGE` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_MESSAGE else flat[: MAX_MESSAGE - 3] + "..."


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every credential it may quote replaced by `REDACTED`.

    Each of `secrets` as it is, percent-encoded, and in the Base64 an HTTP Basic header carries
    (`secret:`, `:secret`, and `a:b` for any two of them, with or without padding); the value of any
    `Authorization` header; any token after `Basic` or `Bearer`; any `key=`, `token=`, `secret=` or
    `password=` parameter. A secret shorter than `MIN_SECRET` is not looked for as it is (it
    would match ordinary words), only in its Base64 forms. Callers cap the length afterwards
    (`one_line`): never cut before redacting, or half a key would survive.
    """
    values = sorted({s for s in secrets if s}, key=len, reverse=True)
    forms: set[str] = set()
    for secret in values:
        if len(secret) >= MIN_SECRET:
            forms |= {secret, quote(secret, safe="")}
    for user, password in [*((s, "") for s in values), *(("", s) for s in values)]:
        forms.add(_basic(user, password))
    for user, password in itertools.permutations(values, 2):
        forms.add(_basic(user, password))
    forms |= {form.rstrip("=") for form in forms if len(form.rstrip("=")) >= 8}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, REDACTED)
    text = _AUTHORIZATION.sub(lambda m: m.group(1) + REDACTED, text)
    text = _SCHEME_TOKEN.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    return _KEY_PARAMETER.sub(lambda m: m.group(1) + "=" + REDACTED, text)


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def exit_with(error: UserError, logger: logging.Logger) -> NoReturn:
    """The one place a `UserError` becomes what the user sees: one ERROR line and the exit code."""
    logger.error("%s", one_line(str(error)))
    sys.exit(error.exit_code)


def request_path(response_or_request: requests.Response | requests.PreparedRequest | None) -> str:
    """The URL path of a request, without the query string (all that messages ever show)."""
    url = getattr(response_or_request, "url", None) or ""
    return urlsplit(url).path or "/"


def status_summary(response: requests.Response) -> str:
    """``"503 Service Unavailable"``: the status line, nothing from the body. A status the
    standard does not name keeps the server's phrase, redacted and cut short."""
    try:
        reason = HTTPStatus(response.status_code).phrase
    except ValueError:
        own = redact(response.reason or "", request_secrets(response.request))
        reason = one_line(own)[:MAX_PHRASE]
    return f"{response.status_code} {reason}".strip()


def request_secrets(request: requests.PreparedRequest | None) -> list[str]:
    """The credential a request carried (its Authorization header's), to redact from answers."""
    header = request.headers.get("Authorization", "") if request is not None else ""
    text = header.decode("latin-1") if isinstance(header, bytes) else header
    return [part for part in text.split(" ", 1)[-1:] if part]


def failure_summary(exc: object) -> str:
    """A failed attempt without an answer, in a few words: the bounds' own, or the class name."""
    if isinstance(exc, DeadlineExceeded | AnswerTooLarge):
        return str(exc)
    return type(exc).__name__


def authentication_message(region: str, api_origin: str) -> str:
    return (
        f"Customer.io answered 401 Unauthorized from {api_origin}: check that app_api_key is an "
        f"App API key (Account Settings > API Credentials > App API Keys, not a Track or "
        f"Pipelines key) and that region '{region}' is the region of its workspace."
    )


def forbidden_message(path: str) -> str:
    return (
        f"Customer.io answered 403 Forbidden for {path}: use an App API key whose scope allows "
        f"reading People and segments, and check the workspace's IP allowlist."
    )


def segment_not_found_message(segment_id: int) -> str:
    return (
        f"segment {segment_id} does not exist in this workspace: remove it from segment_ids "
        f"(the id is the number in the segment's URL in Customer.io) or check region."
    )


def http_error_message(response: requests.Response) -> str:
    """A generic one-line description of an HTTP error, safe to log."""
    method = response.request.method if response.request is not None else "request"
    return (
        f"Customer.io App API answered {status_summary(response)} "
        f"for {method} {request_path(response)}"
    )


def certificate_message(api_origin: str) -> str:
    return (
        f"the TLS certificate of {api_origin} could not be verified: check api_url, and if a "
        f"proxy inspects TLS, point REQUESTS_CA_BUNDLE at its CA certificate (verification is "
        f"never turned off)."
    )


def retries_exhausted_message(exc: BaseException, elapsed: float) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, requests.Response):
        last, path = status_summary(response), request_path(response)
    else:
        last, path = failure_summary(exc), request_path(getattr(exc, "request", None))
    return (
        f"Customer.io App API request to {path} still failing after retrying for "
        f"{elapsed:.0f} s (last: {last}); Customer.io may be degraded: try again later or raise "
        f"max_retries."
    )
