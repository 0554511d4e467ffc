"""The `emailverify` backend: the EmailVerify.io API instead of our own DNS/SMTP probing.

Answers are mapped onto our taxonomy. A bad key or an empty account stops further calls for the run
(each address then gets Unknown) and is logged once, in one line that says what to do; the key
itself never reaches a log or an exception. A certificate that fails verification is a
configuration error: `CertificateError` stops the run instead of retrying for every address.

Every request is bounded: `emailverify_timeout` is its whole deadline (connecting, sending, the
answer's headers and body: a server trickling its answer is cut off there), and at most
`MAX_ANSWER_BYTES` of answer are read. Past either, the try failed like a dropped connection. What
the server says and a trail keeps (an error message, a status) is redacted (`errors.redact`: the key
rides in the query string, which a careless API quotes back) and cut short.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass

import httpx

from mapper_emailverify.engine.config import VerifierConfig
from mapper_emailverify.engine.errors import CertificateError, one_line, redact
from mapper_emailverify.engine.retry import is_certificate_failure, parse_retry_after
from mapper_emailverify.taxonomy import SubStatus

log = logging.getLogger(__name__)

_QUERY_SECRET = re.compile(r"([?&](?:key|email)=)[^&\s\"']*")
# Where httpx and httpcore log (a filter on a logger does not see its children's records).
HTTP_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)
MAX_LOG_LINE = 1000  # characters of one httpx log line


class _RedactQuery(logging.Filter):
    """httpx logs request URLs at INFO; ours carry the API key and the address in the query. It
    logs the answer's status line too, whose phrase is the server's: the keys of every client of
    the process (`secrets`) and any credential (`errors.redact`) are taken out, the line capped."""

    secrets: frozenset[str] = frozenset()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = message
        if "key=" in message or "email=" in message:
            cleaned = _QUERY_SECRET.sub(r"\1***", cleaned)
        cleaned = redact(cleaned, self.secrets)[:MAX_LOG_LINE]
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


for _name in HTTP_LOGGERS:
    if not any(isinstance(f, _RedactQuery) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(_RedactQuery())

MAX_TRIES = 4
VALIDATE_PATH = "/api/v1/validate"
MAX_RETRY_AFTER = 30.0
MAX_ANSWER_BYTES = 64 * 1024  # an answer is a small JSON object
MAX_SAID = 200  # characters of the server's own words kept in a trail
IDENTITY = {"Accept-Encoding": "identity"}  # a small gzip answer can inflate a thousandfold


class AnswerTooLarge(Exception):
    """An answer's body went past `MAX_ANSWER_BYTES`."""

    def __init__(self) -> None:
        super().__init__(f"an answer larger than {MAX_ANSWER_BYTES // 1024} KB")


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: httpx.Headers
    content: bytes


#: (status, sub_status) -> our substatus; `None` as sub_status is the fallback for the status.
#: None as the value means "accepted" (Valid; our role list picks role_based or mailbox_exists).
_MAPPING: dict[tuple[str, str | None], SubStatus | None] = {
    ("valid", None): None,
    ("role_based", None): SubStatus.ROLE_BASED,
    ("valid", "role_based"): SubStatus.ROLE_BASED,
    ("invalid", None): SubStatus.MAILBOX_NOT_FOUND,
    ("invalid", "failed_syntax_check"): SubStatus.INVALID_SYNTAX,
    ("invalid", "no_dns_entries"): SubStatus.DOMAIN_NOT_FOUND,
    ("invalid", "null_mx"): SubStatus.NULL_MX,
    ("invalid", "mailbox_disabled"): SubStatus.MAILBOX_DISABLED,
    ("invalid", "mailbox_quota_exceeded"): SubStatus.MAILBOX_FULL,
    ("invalid", "global_suppression"): SubStatus.HARD_BOUNCE_HISTORY,
    ("catch-all", None): SubStatus.CATCH_ALL,
    ("unknown", None): SubStatus.SMTP_CONNECTION_FAILED,
    ("unknown", "greylisted"): SubStatus.GREYLISTED,
    ("unknown", "timeout_exceeded"): SubStatus.SMTP_TIMEOUT,
    ("unknown", "antispam_system"): SubStatus.SMTP_BLOCKED,
    ("unknown", "mail_server_did_not_respond"): SubStatus.SMTP_CONNECTION_FAILED,
    ("unknown", "provider_unverifiable"): SubStatus.PROVIDER_UNVERIFIABLE,
    ("unknown", "no_dns_entries"): SubStatus.DNS_ERROR,
    ("do_not_mail", None): SubStatus.SMTP_BLOCKED,
    ("do_not_mail", "disposable"): SubStatus.DISPOSABLE_DOMAIN,
    ("do_not_mail", "role_based"): SubStatus.ROLE_BASED,
    ("do_not_mail", "global_suppression"): SubStatus.HARD_BOUNCE_HISTORY,
    ("skipped", None): SubStatus.SMTP_UNAVAILABLE,
}
# Sub-statuses that mean the same whatever the status says.
_BY_SUBSTATUS: dict[str, SubStatus | None] = {
    "permitted": None,
    "mailbox_not_found": SubStatus.MAILBOX_NOT_FOUND,
    "accept_all": SubStatus.CATCH_ALL,
    "disposable": SubStatus.DISPOSABLE_DOMAIN,
    "null_mx": SubStatus.NULL_MX,
    "failed_syntax_check": SubStatus.INVALID_SYNTAX,
    "provider_unverifiable": SubStatus.PROVIDER_UNVERIFIABLE,
    "greylisted": SubStatus.GREYLISTED,
    "timeout_exceeded": SubStatus.SMTP_TIMEOUT,
}
_INVALID_ONLY = {
    SubStatus.MAILBOX_NOT_FOUND,
    SubStatus.INVALID_SYNTAX,
    SubStatus.NULL_MX,
    SubStatus.DOMAIN_NOT_FOUND,
    SubStatus.MAILBOX_DISABLED,
    SubStatus.MAILBOX_FULL,
}


def map_answer(status: str, sub_status: str | None) -> SubStatus | None:
    """Our substatus for an EmailVerify.io (status, sub_status); None means accepted (Valid)."""
    status = (status or "").strip().lower()
    sub = (sub_status or "").strip().lower() or None
    if (status, sub) in _MAPPING:
        return _MAPPING[status, sub]
    if sub in _BY_SUBSTATUS:
        mapped = _BY_SUBSTATUS[sub]
        # An Invalid reason under a non-invalid status would be a false Invalid: trust the status.
        if not (mapped in _INVALID_ONLY and status != "invalid"):
            return mapped
    return _MAPPING.get((status, None), SubStatus.SMTP_CONNECTION_FAILED)


@dataclass
class RemoteAnswer:
    substatus: SubStatus | None
    trail: str


class EmailVerifyClient:
    """Asks EmailVerify.io about one address at a time."""

    def __init__(self, config: VerifierConfig) -> None:
        self._url = config.emailverify_api_url.rstrip("/") + VALIDATE_PATH
        self._key = config.emailverify_api_key or ""
        if self._key:
            _RedactQuery.secrets = _RedactQuery.secrets | {self._key}
        self._timeout = config.emailverify_timeout
        self._client: httpx.AsyncClient | None = None
        self._dead: SubStatus | None = (
            None  # set after a bad key / no credits: no more calls this run
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def reset_loop(self) -> None:
        self._client = None  # an AsyncClient belongs to the loop it was used on

    async def check(self, address: str) -> RemoteAnswer:
        if self._dead is not None:
            return RemoteAnswer(self._dead, "EmailVerify.io not asked (earlier fatal API error)")
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, headers=IDENTITY)
        error = "no answer"
        for attempt in range(MAX_TRIES):
            try:
                async with asyncio.timeout(self._timeout):
                    response = await self._get(self._client, address)
            except (httpx.HTTPError, TimeoutError, AnswerTooLarge) as exc:
                if is_certificate_failure(exc):
                    raise self._certificate_error() from None
                error = self._problem(exc)
                if attempt + 1 < MAX_TRIES:  # no wait after the last try
                    await asyncio.sleep(min(2**attempt * 0.5, 4))
                continue
            if response.status == 200:
                return self._answer(response)
            if response.status == 429 or response.status >= 500:
                error = f"HTTP {response.status}"
                if attempt + 1 < MAX_TRIES:
                    await asyncio.sleep(self._retry_after(response, attempt))
                continue
            return self._fatal(response)
        log.warning(
            "EmailVerify.io did not answer (%s after %d tries); the address gets Unknown.",
            error,
            MAX_TRIES,
        )
        return RemoteAnswer(SubStatus.SMTP_UNAVAILABLE, f"EmailVerify.io: {error}")

    async def _get(self, client: httpx.AsyncClient, address: str) -> _Answer:
        """One try: the status and at most `MAX_ANSWER_BYTES` of body (`AnswerTooLarge` past)."""
        params = {"key": self._key, "email": address}
        async with client.stream("GET", self._url, params=params) as response:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
                raise AnswerTooLarge
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_ANSWER_BYTES:
                    raise AnswerTooLarge
            return _Answer(response.status_code, response.headers, bytes(body))

    def _problem(self, exc: BaseException) -> str:
        """A failed try in a few words, never the server's."""
        if isinstance(exc, TimeoutError | httpx.TimeoutException):
            return f"no complete answer within {self._timeout:g} s"
        if isinstance(exc, AnswerTooLarge):
            return str(exc)
        return type(exc).__name__

    def _said(self, text: str) -> str:
        """The server's own words, fit for a trail: the key redacted, on one line, cut short."""
        return one_line(redact(text, [self._key]))[:MAX_SAID]

    def _certificate_error(self) -> CertificateError:
        origin = self._url.removesuffix(VALIDATE_PATH)
        return CertificateError(
            f"the TLS certificate of {origin} could not be verified: check emailverify_api_url, "
            "and if a proxy inspects TLS, point SSL_CERT_FILE at its CA certificate "
            "(verification is never turned off)."
        )

    @staticmethod
    def _retry_after(response: _Answer, attempt: int) -> float:
        wait = parse_retry_after(response.headers.get("Retry-After"))
        return min(2**attempt * 0.5 if wait is None else wait, MAX_RETRY_AFTER)

    def _answer(self, response: _Answer) -> RemoteAnswer:
        try:
            body = json.loads(response.content)
            status, sub = str(body.get("status", "")), body.get("sub_status")
        except (ValueError, AttributeError):
            return RemoteAnswer(SubStatus.SMTP_UNAVAILABLE, "EmailVerify.io: unreadable answer")
        return RemoteAnswer(
            map_answer(status, sub if isinstance(sub, str) else None),
            f"EmailVerify.io: status={self._said(status)} sub_status={self._said(str(sub))}",
        )

    def _fatal(self, response: _Answer) -> RemoteAnswer:
        try:
            message = self._said(str(json.loads(response.content).get("error", "")))
        except (ValueError, AttributeError):
            message = ""
        if response.status == 401:
            hint = "EmailVerify.io rejected the API key: check `emailverify_api_key`."
        elif response.status == 402:
            hint = (
                "EmailVerify.io account is out of credits: add credits or set `backend: builtin`."
            )
        else:
            # 400 is about this one request; do not stop the run for it.
            return RemoteAnswer(
                SubStatus.SMTP_UNAVAILABLE,
                f"EmailVerify.io: HTTP {response.status} {message}".rstrip(),
            )
        if self._dead is None:
            log.error("%s Remaining addresses get Unknown/smtp_unavailable.", hint)
        self._dead = SubStatus.SMTP_UNAVAILABLE
        return RemoteAnswer(
            self._dead, f"EmailVerify.io: HTTP {response.status} {message}".rstrip()
        )
