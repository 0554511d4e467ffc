"""Failures the user can fix, each told in one line that says what to do.

The same three classes and two functions exist in each plugin (CONTRIBUTING.md, "Conventions"). A
message never holds a secret, an email address or a response body, because it reaches the logs.
`exit_with` is the one place that turns a `UserError` into what the user sees (the target's `invoke`
calls it).
"""

from __future__ import annotations

import logging
import sys
from typing import NoReturn

MAX_MESSAGE = 500


class UserError(Exception):
    """A failure the user can fix; `str(error)` says how, in one line."""

    exit_code = 1


class ConfigError(UserError):
    """A setting is wrong (e.g. Customer.io refused the key, or the region does not match)."""


class CertificateError(UserError):
    """A server's TLS certificate failed verification: a configuration problem, never retried."""


class DeliveryError(UserError):
    """Writes did not land (retries exhausted, an unexpected answer): STATE does not move on."""


class Terminated(UserError):
    """A termination signal cut the run short: exit 128 + signal, so it is not a success."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


def one_line(text: str) -> str:
    """`text` on one line (whitespace collapsed) and at most `MAX_MESSAGE` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_MESSAGE else flat[: MAX_MESSAGE - 3] + "..."


def exit_with(error: UserError, logger: logging.Logger) -> NoReturn:
    """The one place a `UserError` becomes what the user sees: one ERROR line and the exit code."""
    logger.error("%s", one_line(str(error)))
    sys.exit(error.exit_code)
