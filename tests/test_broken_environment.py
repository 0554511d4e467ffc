"""A broken environment stops the run before it writes damage: each slip a real user makes ends
in a non-zero exit with one line that says what to do, and nothing is written; the normal run next
to each is unaffected (the other end-to-end tests).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from cio_sandbox import Sandbox, World
from cio_sandbox.loopback import blackholes
from cio_sandbox.pipeline import MAPPER, PipedRun, run_piped

pytestmark = pytest.mark.slow


def run(tmp_path: Path, mapper: dict[str, Any], **faults: Any) -> tuple[PipedRun, dict[str, int]]:
    with Sandbox(World(seed=31, people=300)) as sb:
        sb.obs.faults.app_rate_limit = 0
        for name, value in faults.items():
            setattr(sb.obs.faults, name, value)
        piped = run_piped(sb, tmp_path, tap={"requests_per_second": 200}, mapper=mapper)
        return piped, dict(sb.obs.writes)


def one_error(piped: PipedRun) -> str:
    log = piped.logs[MAPPER]
    assert piped.returncodes[MAPPER] == 1, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    errors = [line for line in log.splitlines() if "| ERROR" in line]
    assert len(errors) == 1, errors
    return errors[0]


def test_a_resolver_that_answers_nothing_useful_stops_the_run(tmp_path: Path) -> None:
    piped, writes = run(tmp_path, {}, dns_servfail_rate=1.0)
    error = one_error(piped)
    assert "Unknown/dns_error" in error and "dns_nameservers" in error, error
    assert writes == {}


def test_port_25_blocked_with_no_proxy_stops_the_run(tmp_path: Path) -> None:
    with Sandbox(World(seed=31, people=300)) as sb:
        sb.obs.faults.app_rate_limit = 0
        with blackholes(sorted(sb.world.smtp_hosts)) as port:
            started = time.monotonic()
            piped = run_piped(
                sb,
                tmp_path,
                tap={"requests_per_second": 200},
                mapper={"smtp_port": port, "smtp_connect_timeout": 0.5},
            )
            elapsed = time.monotonic() - started
        writes = dict(sb.obs.writes)
    error = one_error(piped)
    assert "port 25" in error and "socks_proxy" in error, error
    assert writes == {}
    assert elapsed < 120


@pytest.mark.parametrize(
    ("mapper", "words"),
    [
        ({"email_field": "Email"}, ["email_field 'Email'", "which has email"]),
        (
            {"stream_email_fields": {"people": "emial"}},
            ["stream_email_fields", "'people'", "'emial'", "cio_id"],
        ),
    ],
    ids=["email_field", "stream_email_fields"],
)
def test_a_field_setting_that_matches_nothing_stops_the_run(
    tmp_path: Path, mapper: dict[str, Any], words: list[str]
) -> None:
    piped, writes = run(tmp_path, mapper)
    error = one_error(piped)
    assert all(word in error for word in words), error
    assert writes == {}
