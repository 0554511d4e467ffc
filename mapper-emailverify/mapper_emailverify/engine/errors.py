"""Failures the user can fix, each told in one line that says what to do.

The same three classes and three functions exist in each plugin (CONTRIBUTING.md, "Conventions"): a
message never holds a secret, an email address or a remote server's words, because it reaches logs.
A remote server's words that a verdict's trail keeps (an EmailVerify.io error) go through `redact`
first: an API that quotes the request back must not put the key there.
"""

from __future__ import annotations

import base64
import itertools
import logging
import re
import sys
from collections.abc import Iterable
from typing import NoReturn
from urllib.parse import quote

MAX_MESSAGE = 500
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
    """A failure the user can fix; `str(error)` says how, in one line."""

    exit_code = 1


class ConfigError(UserError, ValueError):
    """A setting is wrong (a ValueError too, for library callers that catch bad values)."""


class CertificateError(UserError):
    """A server's TLS certificate failed verification: a configuration problem, never retried."""


def one_line(text: str) -> str:
    """`text` on one line (whitespace collapsed) and at most `MAX_MESSAGE` characters."""
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
