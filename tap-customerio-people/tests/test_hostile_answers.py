"""Hostile App API answers cannot exhaust the tap (issue 16): `request_timeout` is each request's
whole deadline (connect, headers, body), an answer is read up to `MAX_ANSWER_BYTES` (64 MB, room
for the largest legitimate page), and a server's words reach no log with the key in them.

The servers are `cio_sandbox.hostile_http` servers on loopback, stopped by each test; the tap runs
as its executable with an address-space limit, so an unbounded read fails the test, not the machine.
"""

from __future__ import annotations

import base64
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cio_sandbox import hostile_http as hostile

EXECUTABLE = Path(sys.executable).parent / "tap-customerio-people"
APP_KEY = "AppKey-SECRET-7f3c9d1e42b8"
MEMORY_LIMIT = 1536 * 1024 * 1024


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


class Ran:
    def __init__(self, proc: subprocess.CompletedProcess[str], seconds: float) -> None:
        self.returncode, self.stdout, self.stderr = proc.returncode, proc.stdout, proc.stderr
        self.seconds = seconds

    def error(self) -> str:
        """The one ERROR line of the run."""
        errors = [
            line
            for line in self.stderr.splitlines()
            if "| ERROR" in line and "An unhandled error occurred" not in line  # the SDK's own
        ]
        assert len(errors) == 1, self.stderr[-3000:]
        return errors[0]


def run_tap(tmp_path: Path, server: Any, timeout: float = 60, **over: Any) -> Ran:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"app_api_key": APP_KEY, "api_url": server.url, **over}))
    started = time.monotonic()
    proc = subprocess.run(
        [str(EXECUTABLE), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_limit_memory,
        check=False,
    )
    return Ran(proc, time.monotonic() - started)


@pytest.fixture
def serve() -> Iterator[Callable[..., hostile.HostileHTTP]]:
    servers: list[hostile.HostileHTTP] = []

    def start(reply: Any) -> hostile.HostileHTTP:
        servers.append(hostile.HostileHTTP(reply).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.mark.parametrize(
    "reply", [hostile.trickle(every=0.5), hostile.trickle_head(every=0.5)], ids=["body", "head"]
)
def test_a_trickled_answer_ends_at_request_timeout(tmp_path, serve, reply):
    server = serve(reply)
    run = run_tap(tmp_path, server, timeout=30, request_timeout=2, max_retries=0)
    assert run.returncode == 1, run.stderr[-2000:]
    assert run.seconds < 2 + 5  # the deadline, plus starting the executable
    error = run.error()
    assert "no complete answer within 2 s" in error
    assert server.requests == 1


@pytest.mark.parametrize("reply", [hostile.endless(), hostile.huge()], ids=["endless", "huge"])
def test_an_endless_or_huge_answer_is_cut_at_the_cap(tmp_path, serve, reply):
    server = serve(reply)
    run = run_tap(tmp_path, server, request_timeout=30, max_retries=0)
    assert run.returncode == 1, run.stderr[-2000:]
    error = run.error()
    assert "an answer larger than 64 MB" in error
    assert run.seconds < 20 and server.bytes_sent < 256 * 1024 * 1024


def test_a_status_phrase_quoting_the_key_reaches_no_log(tmp_path, serve):
    server = serve(hostile.echoing(599, in_reason=True))
    run = run_tap(tmp_path, server, max_retries=1)
    assert run.returncode == 1, run.stderr[-2000:]
    assert f"Bearer {APP_KEY}" in server.seen[0].headers["Authorization"]
    for form in (APP_KEY, base64.b64encode(APP_KEY.encode()).decode()):
        assert form not in run.stderr and form not in run.stdout
    error = run.error()
    said = "599 Refused /v1/esp/suppression/bounces?limit=1000&offset=0 Authorization: [redacted]"
    assert said in error
