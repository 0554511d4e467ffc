"""The conventions the three plugins share without sharing a package (CONTRIBUTING.md): the same
tables of URLs, `Retry-After` values, certificate errors, malformed secrets and user-facing errors
go through each plugin's own implementation and must get the same answers."""

from __future__ import annotations

import email.utils
import importlib
import logging
import ssl
import threading
from types import ModuleType
from typing import Any

import httpx
import pytest
import requests
import urllib3

PLUGINS: dict[str, dict[str, str]] = {
    "tap": {
        "errors": "tap_customerio_people.errors",
        "urls": "tap_customerio_people.urls",
        "retry": "tap_customerio_people.retry",
        "stats": "tap_customerio_people.stats",
        "secrets": "tap_customerio_people.settings",
    },
    "mapper": {
        "errors": "mapper_emailverify.engine.errors",
        "urls": "mapper_emailverify.engine.urls",
        "retry": "mapper_emailverify.engine.retry",
        "stats": "mapper_emailverify.stream_map.stats",
        "secrets": "mapper_emailverify.engine.config",
    },
    "target": {
        "errors": "target_customerio_ev.errors",
        "urls": "target_customerio_ev.urls",
        "retry": "target_customerio_ev.retry",
        "stats": "target_customerio_ev.stats",
        "secrets": "target_customerio_ev.settings",
    },
}


def module(plugin: str, concern: str) -> ModuleType:
    return importlib.import_module(PLUGINS[plugin][concern])


each_plugin = pytest.mark.parametrize("plugin", sorted(PLUGINS))

# ------------------------------------------------------------------------------ URL / origins
GOOD_ORIGINS = [
    "https://api.customer.io",
    "https://api-eu.customer.io/",
    " https://cdp.customer.io ",
    "https://api.customer.io:8443",
    "http://127.0.0.1:8080",
    "http://127.5.6.7",
    "http://localhost:9000",
    "http://LOCALHOST",
    "http://[::1]:8080",
]
BAD_ORIGINS = [
    "http://api.customer.io",  # plain http to a public host: the key in clear text
    "http://10.0.0.1:8080",  # private is not loopback
    "http://127.0.0.1.nip.io",  # a name that looks loopback is not
    "ftp://api.customer.io",
    "api.customer.io",
    "https://",
    "https://user:hunter2@api.customer.io",
    "https://:hunter2@api.customer.io",
    "https://api.customer.io?key=1",
    "https://api.customer.io#top",
    "https://api.customer.io/v1",
    "https://api.customer.io:99999",
    "https://api.customer.io:port",
    "",
    42,
    None,
]


@each_plugin
@pytest.mark.parametrize("url", GOOD_ORIGINS)
def test_usable_origins(plugin: str, url: str) -> None:
    urls = module(plugin, "urls")
    assert urls.origin_error(url, "api_url") is None
    assert urls.normalized_origin(url) == url.strip().rstrip("/")


@each_plugin
@pytest.mark.parametrize("url", BAD_ORIGINS)
def test_refused_origins_name_the_setting_and_hide_credentials(plugin: str, url: Any) -> None:
    problem = module(plugin, "urls").origin_error(url, "some_api_url")
    assert isinstance(problem, str) and "\n" not in problem
    assert "some_api_url" in problem
    assert "hunter2" not in problem


@each_plugin
@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("10.0.0.1", False),
        ("0.0.0.0", False),
        ("example.com", False),
        ("localhost.example.com", False),
    ],
)
def test_loopback_hosts(plugin: str, host: str, loopback: bool) -> None:
    assert module(plugin, "urls").is_loopback_host(host) is loopback


# ------------------------------------------------------------------------------ Retry-After
NOW = 1_000_000_000.0  # 2001-09-09T01:46:40Z
RETRY_AFTER = [
    (None, None),
    ("", None),
    ("   ", None),
    ("0", 0.0),
    ("120", 120.0),
    (" 7 ", 7.0),
    ("1.5", 1.5),
    ("86400", 86400.0),  # never capped here: each caller caps with its own setting
    ("-5", None),
    ("nan", None),
    ("inf", None),
    ("soon", None),
    ("Sun, 06 Nov 1994 08:49:37 GMT", 0.0),  # in the past (RFC 9110's example date)
    (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
    (email.utils.formatdate(NOW + 3600, usegmt=True), 3600.0),
    ("Sun, 99 Foo 2001 99:99:99 GMT", None),
]


@each_plugin
@pytest.mark.parametrize(("value", "seconds"), RETRY_AFTER)
def test_retry_after(plugin: str, value: str | None, seconds: float | None) -> None:
    assert module(plugin, "retry").parse_retry_after(value, now=NOW) == seconds


# ------------------------------------------------------------------------------ certificates
def _raised_from(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except BaseException as caught:
        return caught


def _in_context(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException:
            raise outer  # noqa: B904  # an implicit context is what some clients leave
    except BaseException as caught:
        return caught


CERT = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] self-signed certificate")
CERTIFICATE_FAILURES = {
    "ssl error itself": CERT,
    "httpx ConnectError from it": _raised_from(httpx.ConnectError("connect failed"), CERT),
    "requests SSLError wrapping urllib3's MaxRetryError(reason=...)": requests.exceptions.SSLError(
        urllib3.exceptions.MaxRetryError(
            None,  # type: ignore[arg-type]  # no pool needed to carry a reason
            "/v1/customers",
            reason=urllib3.exceptions.SSLError(CERT),
        )
    ),
    "only in the context": _in_context(RuntimeError("while connecting"), CERT),
}
NOT_CERTIFICATE_FAILURES = {
    "handshake cut short": ssl.SSLError(1, "[SSL: UNEXPECTED_EOF_WHILE_READING]"),
    "refused": httpx.ConnectError("[Errno 111] Connection refused"),
    "reset": ConnectionResetError(104, "reset"),
    "timeout": TimeoutError("timed out"),
    "requests connection error": requests.exceptions.ConnectionError("refused"),
}


@each_plugin
@pytest.mark.parametrize("case", sorted(CERTIFICATE_FAILURES))
def test_certificate_failures_are_recognised(plugin: str, case: str) -> None:
    assert module(plugin, "retry").is_certificate_failure(CERTIFICATE_FAILURES[case]) is True


@each_plugin
@pytest.mark.parametrize("case", sorted(NOT_CERTIFICATE_FAILURES))
def test_other_failures_are_not_certificate_failures(plugin: str, case: str) -> None:
    assert module(plugin, "retry").is_certificate_failure(NOT_CERTIFICATE_FAILURES[case]) is False


def test_a_self_referencing_chain_ends() -> None:
    loop = RuntimeError("a")
    loop.__context__ = RuntimeError("b")
    loop.__context__.__context__ = loop
    for plugin in PLUGINS:
        assert module(plugin, "retry").is_certificate_failure(loop) is False


# ------------------------------------------------------------------------------ secrets
GOOD_SECRETS = ["abc123", "a-b_c.d:e/f+g=~!", "0" * 200]
BAD_SECRETS = [
    "",
    " S3CRETKEY",
    "S3CRETKEY\n",
    "S3CRET KEY",
    "S3CRETKEY\r\nX-Injected: 1",
    "S3CRETKEY\t",
    "S3CRET\x00KEY",
    "S3CRETKÉY",
    None,
    12345,
]


@each_plugin
@pytest.mark.parametrize("value", GOOD_SECRETS)
def test_well_formed_secrets(plugin: str, value: str) -> None:
    assert module(plugin, "secrets").secret_error(value, "api_key") is None


@each_plugin
@pytest.mark.parametrize("value", BAD_SECRETS)
def test_malformed_secrets_are_named_never_shown(plugin: str, value: Any) -> None:
    problem = module(plugin, "secrets").secret_error(value, "some_api_key")
    assert isinstance(problem, str) and "\n" not in problem
    assert "some_api_key" in problem
    assert "S3CRET" not in problem


# ------------------------------------------------------------------------------ errors
@each_plugin
def test_one_base_class_for_user_errors(plugin: str) -> None:
    errors = module(plugin, "errors")
    assert issubclass(errors.ConfigError, errors.UserError)
    assert issubclass(errors.CertificateError, errors.UserError)
    assert errors.UserError("x").exit_code == 1
    assert errors.one_line("first\n  second\tthird  ") == "first second third"
    long = errors.one_line("word " * 1000)
    assert "\n" not in long and len(long) <= 500


@each_plugin
def test_exit_with_is_one_error_line_and_the_exit_code(
    plugin: str, caplog: pytest.LogCaptureFixture
) -> None:
    errors = module(plugin, "errors")
    logger = logging.getLogger(f"conventions.{plugin}")
    with caplog.at_level(logging.DEBUG, logger=logger.name), pytest.raises(SystemExit) as stop:
        errors.exit_with(errors.ConfigError("set api_url\nto an https origin"), logger)
    assert stop.value.code == 1
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, "set api_url to an https origin")
    ]


# ------------------------------------------------------------------------------ run counters
@each_plugin
def test_run_counters(plugin: str) -> None:
    stats = module(plugin, "stats").RunStats()
    assert stats["requests"] == 0

    def work() -> None:
        for _ in range(5000):
            stats.count("requests")
        stats.count("retries", 3)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snapshot = stats.snapshot()
    assert snapshot["requests"] == 40_000 and stats["requests"] == 40_000
    assert snapshot["retries"] == 24
    snapshot["requests"] = 0
    assert stats["requests"] == 40_000, "a snapshot is a copy"


# ------------------------------------------------------------------------------ redaction
KEY = "CdpKey-SECRET-a91b07d3c5e6"
SITE = "SiteId-SECRET-55aa"
PLUS = "Ev+Key/SECRET="  # a key with characters a query string percent-encodes
B64 = {
    "user": "Q2RwS2V5LVNFQ1JFVC1hOTFiMDdkM2M1ZTY6",  # base64 of "<KEY>:", a Basic user
    "password": "OkNkcEtleS1TRUNSRVQtYTkxYjA3ZDNjNWU2",  # base64 of ":<KEY>"
    "pair": "U2l0ZUlkLVNFQ1JFVC01NWFhOkNkcEtleS1TRUNSRVQtYTkxYjA3ZDNjNWU2",  # "<SITE>:<KEY>"
}
# (text a server sent back, what is left of it); the configured secrets: KEY, SITE, PLUS and "k".
REDACTIONS = [
    (f"bad key {KEY}", "bad key [redacted]"),
    (f"GET /api/v1/validate?key={KEY}&email=a", "GET /api/v1/validate?key=[redacted]&email=a"),
    ("GET /v?api_key=unconfigured-value&x=1", "GET /v?api_key=[redacted]&x=1"),
    (f"Authorization: Basic {B64['user']} Host: x", "Authorization: [redacted] Host: x"),
    (f"echo {B64['user']} end", "echo [redacted] end"),
    (f"echo {B64['user'].rstrip('=')}", "echo [redacted]"),
    (f"echo {B64['password']}", "echo [redacted]"),
    (f"echo {B64['pair']}", "echo [redacted]"),
    ('{"authorization": "Bearer some-unconfigured-token"}', '{"authorization": "[redacted]"}'),
    ("token was Bearer abcdef123456 here", "token was Bearer [redacted] here"),
    (
        f"user {SITE} and {PLUS} or Ev%2BKey%2FSECRET%3D",
        "user [redacted] and [redacted] or [redacted]",
    ),
    ("batch[3]: traits.EV_Status is too long", "batch[3]: traits.EV_Status is too long"),
    ("Basic auth failed", "Basic auth failed"),
    ("a keyword kept", "a keyword kept"),  # "k" is configured too: too short to look for
]


@each_plugin
@pytest.mark.parametrize(("said", "left"), REDACTIONS)
def test_redact_keeps_every_credential_out(plugin: str, said: str, left: str) -> None:
    errors = module(plugin, "errors")
    assert errors.redact(said, [KEY, SITE, PLUS, "k"]) == left
    assert errors.REDACTED == "[redacted]"


@each_plugin
def test_redact_then_one_line_bounds_a_huge_reason(plugin: str) -> None:
    errors = module(plugin, "errors")
    reason = errors.one_line(errors.redact(f"{'z' * 99_990} {KEY}", [KEY]))
    assert len(reason) <= 500 and KEY not in reason
