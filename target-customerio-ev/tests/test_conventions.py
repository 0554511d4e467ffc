"""The cross-plugin conventions (CONTRIBUTING.md) as this target implements them, one setting
declaration, and a package without import cycles."""

from __future__ import annotations

import ast
import email.utils
import logging
import ssl
import threading
from pathlib import Path

import pytest
from target_customerio_ev import errors, settings
from target_customerio_ev.retry import is_certificate_failure, parse_retry_after
from target_customerio_ev.settings import (
    CONFIG_SCHEMA,
    DEFAULTS,
    Settings,
    config_errors,
    secret_error,
)
from target_customerio_ev.stats import RunStats
from target_customerio_ev.urls import is_loopback_host, normalized_origin, origin_error

PACKAGE = Path(settings.__file__).parent
KEY = "sekret-wr1te-k3y"


def test_settings_take_their_defaults_from_the_schema():
    resolved = Settings.from_config({"pipelines_api_key": KEY})
    for name, default in DEFAULTS.items():
        expected = tuple(default) if isinstance(default, list) else default
        assert getattr(resolved, name) == expected, name
    # An unset (null) setting is the default too, never a falsy value.
    assert Settings.from_config({"max_retries": None, "skip_unchanged": None}).max_retries == 8
    assert Settings.from_config({"max_retries": 0}).max_retries == 0


@pytest.mark.parametrize(
    "name", [n for n, spec in CONFIG_SCHEMA["properties"].items() if "maximum" in spec]
)
def test_limits_live_in_the_schema_and_name_the_setting(name):
    spec = CONFIG_SCHEMA["properties"][name]
    for value in (spec["minimum"] - 1, spec["maximum"] + 1):
        (error,) = config_errors({"pipelines_api_key": KEY, name: value})
        assert error.startswith(f"{name} must be between {spec['minimum']} and {spec['maximum']}")
    assert config_errors({"pipelines_api_key": KEY, name: spec["maximum"]}) == []


@pytest.mark.parametrize(
    "name", [n for n, spec in CONFIG_SCHEMA["properties"].items() if "exclusiveMinimum" in spec]
)
def test_seconds_must_be_positive(name):
    (error,) = config_errors({"pipelines_api_key": KEY, name: 0})
    assert error.startswith(f"{name} must be greater than 0")


@pytest.mark.parametrize(
    "bad", ["s3cr3t with space", "s3cr3t\n", "s3cr3t\r\nX-Injected: 1", "s3cr3t\x00", "\ts3cr3t"]
)
@pytest.mark.parametrize(
    "name", ["pipelines_api_key", "track_site_id", "track_api_key", "app_api_key"]
)
def test_a_secret_with_blanks_or_control_characters_is_refused_without_echo(name, bad):
    config = {"pipelines_api_key": KEY, "track_site_id": "s", "track_api_key": "t", name: bad}
    (error,) = config_errors(config)
    assert error.startswith(name) and "s3cr3t" not in error and "\n" not in error
    assert secret_error(KEY, name) is None
    assert secret_error("", name) is not None and secret_error(42, name) is not None


def test_a_secret_of_the_wrong_type_is_not_echoed():
    (error,) = config_errors({"pipelines_api_key": 31337})
    assert "pipelines_api_key" in error and "31337" not in error


def test_origins():
    assert is_loopback_host("localhost") and is_loopback_host("127.0.0.2")
    assert is_loopback_host("::1") and not is_loopback_host("cdp.customer.io")
    assert origin_error("https://cdp.customer.io/", "api_url") is None
    assert origin_error("http://127.0.0.1:8080", "api_url") is None
    for url in (
        "http://cdp.customer.io",
        "https://u:p@cdp.customer.io",
        "https://cdp.customer.io/v1",
        "https://cdp.customer.io?x=1",
        "cdp.customer.io",
        "https://cdp.customer.io:99999",
    ):
        error = origin_error(url, "track_api_url")
        assert error is not None and error.startswith("track_api_url") and ":p@" not in error
    assert normalized_origin(" https://cdp.customer.io// ") == "https://cdp.customer.io"


def test_parse_retry_after():
    assert parse_retry_after("120") == 120 and parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("86400") == 86400  # never capped here
    for unreadable in (None, "", "-1", "nan", "inf", "-inf", "soon", "Mon, 99 Foo 2026"):
        assert parse_retry_after(unreadable) is None, unreadable
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after(date, now=1_000_000) == pytest.approx(30)
    assert parse_retry_after(date, now=2_000_000) == 0


def test_certificate_failures_are_found_behind_wrappers():
    cert = ssl.SSLCertVerificationError(1, "certificate verify failed")

    class Wrapped(Exception):
        def __init__(self, reason: object) -> None:
            super().__init__("wrapped")
            self.reason = reason

    assert is_certificate_failure(cert)
    assert is_certificate_failure(OSError(OSError(cert)))  # in the arguments
    assert is_certificate_failure(Wrapped(cert))  # in `reason`
    try:
        try:
            raise cert
        except ssl.SSLError as exc:
            raise ConnectionError("connect failed") from exc
    except ConnectionError as chained:
        assert is_certificate_failure(chained)  # the cause
    assert not is_certificate_failure(ssl.SSLError("handshake failure"))
    assert not is_certificate_failure(ConnectionError("refused"))


def test_run_stats_count_across_threads():
    stats = RunStats()
    workers = [
        threading.Thread(target=lambda: [stats.count("written") for _ in range(1000)])
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stats.count("retries", 3)
    assert stats["written"] == 4000 and stats.snapshot()["retries"] == 3
    assert stats.snapshot()["dead_lettered"] == 0
    assert stats.line(dry_run=False).startswith("Summary: written 4000,")


def test_user_errors_exit_with_one_line(caplog):
    assert issubclass(errors.ConfigError, errors.UserError)
    assert issubclass(errors.CertificateError, errors.UserError)
    assert issubclass(errors.DeliveryError, errors.UserError)
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as stop:
        errors.exit_with(errors.DeliveryError("first\n  second " + "x" * 900), logging.getLogger())
    assert stop.value.code == errors.UserError.exit_code == 1
    (record,) = caplog.records
    assert record.getMessage().startswith("first second x") and len(record.getMessage()) <= 500


def _imports(path: Path) -> set[str]:
    """The package modules `path` imports, under `if TYPE_CHECKING:` too."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE.name):
            found.add((node.module or "").removeprefix(PACKAGE.name).lstrip(".") or "__init__")
    return found


def test_no_import_cycles():
    graph = {path.stem: _imports(path) for path in PACKAGE.glob("*.py")}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for module in graph.get(start, ()):
            if module == goal or (module not in seen and reaches(module, goal, seen | {module})):
                return True
        return False

    assert [m for m in graph if reaches(m, m, set())] == []


@pytest.mark.parametrize(
    ("override", "setting"),
    [
        ({"max_in_flight": 64}, "max_in_flight"),
        ({"pipelines_api_key": "k3y with space"}, "pipelines_api_key"),
        ({"request_timeout": -1}, "request_timeout"),
    ],
)
def test_a_bad_setting_stops_the_executable_before_any_request(sb, h, tmp_path, override, setting):
    record = h.person_record(sb.world.person(1))
    run = h.run_executable(tmp_path, sb.target_config(**override), h.singer_lines([record]))
    problems = [
        line
        for line in run.stderr.splitlines()
        if "| ERROR" in line and not line.endswith("Config validation failed")
    ]
    assert run.returncode == 1 and len(problems) == 1 and setting in problems[0], run.stderr
    assert "Traceback" not in run.stderr and "with space" not in run.stderr
    assert sb.obs.requests_to("pipelines") == 0 and run.states == []
