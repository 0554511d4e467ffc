"""Hostile answers cannot exhaust the run (issue 16): every HTTP answer the target reads is
bounded in time (`request_timeout` covers connect, headers and body) and in size; a refusal of even
one small message is systemic; a server's words reach no log or dead letter with a key in them; a
dead-letter file that cannot be written stops the run in one line.

The servers are `cio_sandbox.hostile_http` servers on loopback, stopped by each test. The target
runs as its executable, with an address-space limit where an unbounded read would otherwise eat the
machine, so a regression fails the test instead.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cio_sandbox import hostile_http as hostile

PIPELINES_KEY = "CdpKey-SECRET-a91b07d3c5e6"
SITE_ID = "SiteId-SECRET-55aa"
TRACK_KEY = "TrackKey-SECRET-66bb"
APP_KEY = "AppKey-SECRET-7f3c9d1e42b8"
MEMORY_LIMIT = 1536 * 1024 * 1024  # address space of the target process: far above a normal run


def key_forms() -> set[str]:
    """Every key, and the forms it travels in (HTTP Basic: the Pipelines key, the Track pair)."""
    basic = [f"{PIPELINES_KEY}:", f"{SITE_ID}:{TRACK_KEY}"]
    return {
        PIPELINES_KEY,
        SITE_ID,
        TRACK_KEY,
        APP_KEY,
        *(base64.b64encode(pair.encode()).decode() for pair in basic),
    }


def records(n: int) -> list[str]:
    schema = {
        "type": "SCHEMA",
        "stream": "people",
        "key_properties": ["cio_id"],
        "schema": {
            "type": "object",
            "properties": {
                "cio_id": {"type": "string"},
                "id": {"type": ["string", "null"]},
                "email": {"type": ["string", "null"]},
                "EV_Status": {"type": ["string", "null"]},
            },
        },
    }
    lines = [json.dumps(schema)]
    for i in range(n):
        record = {"cio_id": str(i), "id": f"user-{i}", "email": None, "EV_Status": "Valid"}
        lines.append(json.dumps({"type": "RECORD", "stream": "people", "record": record}))
    lines.append(json.dumps({"type": "STATE", "value": {"bookmarks": {"people": {"n": n}}}}))
    return lines


class Ran:
    def __init__(self, proc: subprocess.CompletedProcess[str], seconds: float) -> None:
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.seconds = seconds
        self.states = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]

    def errors(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if "| ERROR" in line]


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_target(h: Any, tmp_path: Path, config: dict[str, Any], lines: list[str], **kw: Any) -> Ran:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    started = time.monotonic()
    proc = subprocess.run(
        [h.EXECUTABLE, "--config", str(path)],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=kw.get("timeout", 60),
        env={**os.environ, "PYTHONUNBUFFERED": "1", **kw.get("env", {})},
        preexec_fn=_limit_memory,
        check=False,
    )
    return Ran(proc, time.monotonic() - started)


@pytest.fixture
def serve() -> Any:
    servers: list[hostile.HostileHTTP] = []

    def start(reply: hostile.Reply | Callable[[hostile.Request], hostile.Reply]) -> Any:
        servers.append(hostile.HostileHTTP(reply).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def pipelines(server: Any, **over: Any) -> dict[str, Any]:
    return {"pipelines_api_key": PIPELINES_KEY, "api_url": server.url, **over}


# ------------------------------------------------------------------------ item 6: blanket refusals
def test_a_413_to_one_small_message_is_systemic_at_once(h, tmp_path, serve):
    server = serve(hostile.rejection(413))
    run = run_target(h, tmp_path, pipelines(server), records(1))
    assert run.returncode == 1 and run.states == [], run.stderr[-2000:]
    (error,) = run.errors()
    assert "413" in error and "max_batch_bytes" in error and "STATE was not advanced" in error
    assert server.requests == 1


def test_a_413_to_every_single_message_request_stops_after_the_first(h, tmp_path, serve):
    server = serve(hostile.rejection(413))
    config = pipelines(server, max_batch_messages=1, dead_letter_path=str(tmp_path / "dead.jsonl"))
    run = run_target(h, tmp_path, config, records(60))
    assert run.returncode == 1 and run.states == [], run.stderr[-2000:]
    assert server.requests <= config.get("max_in_flight", 4)
    dead = (tmp_path / "dead.jsonl").read_text().splitlines()
    assert len(dead) <= 4


@pytest.mark.parametrize("body", [None, {"meta": {"errors": ["bad request"]}}])
def test_a_bare_400_to_every_request_stops_the_run(h, tmp_path, serve, body):
    server = serve(hostile.rejection(400, body))
    config = pipelines(server, dead_letter_path=str(tmp_path / "dead.jsonl"))
    run = run_target(h, tmp_path, config, records(300))
    assert run.returncode == 1 and run.states == [], run.stderr[-2000:]
    (error,) = run.errors()
    assert "accepted none" in error and "STATE was not advanced" in error
    assert server.requests < 100
    assert len((tmp_path / "dead.jsonl").read_text().splitlines()) <= 24


# ------------------------------------------------------------------------ item 7: time and size
def test_a_trickled_answer_ends_at_request_timeout(h, tmp_path, serve):
    server = serve(hostile.trickle(every=0.5))  # 41 bytes: about 20 s
    config = pipelines(server, request_timeout=2, max_retries=0)
    run = run_target(h, tmp_path, config, records(1))
    assert run.returncode == 1 and run.states == [], run.stderr[-2000:]
    assert run.seconds < 2 + 4  # the deadline, plus starting the executable
    (error,) = run.errors()
    assert "no complete answer within 2 s" in error


def test_trickled_headers_end_at_request_timeout(h, tmp_path, serve):
    server = serve(hostile.trickle_head(every=0.5))
    config = pipelines(server, request_timeout=2, max_retries=0)
    run = run_target(h, tmp_path, config, records(1), timeout=30)
    assert run.returncode == 1 and run.states == [], run.stderr[-2000:]
    assert run.seconds < 2 + 4
    (error,) = run.errors()
    assert "no complete answer within 2 s" in error


@pytest.mark.parametrize("reply", [hostile.endless(), hostile.huge()], ids=["endless", "huge"])
def test_an_endless_or_huge_answer_is_cut_at_the_cap(h, tmp_path, serve, reply):
    server = serve(reply)
    config = pipelines(server, request_timeout=20, max_retries=1, max_backoff_seconds=0.1)
    run = run_target(h, tmp_path, config, records(1))
    assert run.returncode == 1 and run.states == [], run.stderr[-2000:]
    (error,) = run.errors()
    assert "an answer larger than" in error
    assert server.requests == 2 and run.seconds < 10
    assert server.bytes_sent < 64 * 1024 * 1024  # the kernel's buffers, not the whole answer


def test_an_endless_app_api_answer_fails_the_landing_check(sb, h, tmp_path, serve):
    server = serve(hostile.endless())
    people = [p for p in sb.world.iter_people() if p.id][:5]
    config = sb.target_config(
        app_api_key=APP_KEY,
        app_api_url=server.url,
        landing_check_sample=3,
        landing_check_timeout=3,
        request_timeout=5,
    )
    run = run_target(h, tmp_path, config, h.singer_lines([h.person_record(p) for p in people]))
    assert run.returncode == 1 and run.states == [], run.stderr[-2000:]
    (error,) = run.errors()
    assert "could not be read" in error and "an answer larger than" in error


# ------------------------------------------------------------------------ item 11: echoed secrets
def assert_no_key(text: str, where: str) -> None:
    for form in key_forms():
        assert form not in text, f"a key form appears in {where}"


def test_a_400_quoting_the_request_leaks_no_key_into_the_log(h, tmp_path, serve):
    server = serve(hostile.echoing(400, pad=15_000))
    run = run_target(h, tmp_path, pipelines(server), records(30))
    assert run.returncode == 1, run.stderr[-2000:]
    assert "Authorization" in server.seen[0].headers
    assert_no_key(run.stderr, "stderr")
    warnings = [line for line in run.stderr.splitlines() if "Dead letter" in line]
    assert warnings and all(len(line) < 800 for line in warnings)


def test_a_400_quoting_the_request_leaks_no_key_into_dead_letters(h, tmp_path, serve):
    server = serve(hostile.echoing(400, pad=15_000))
    dead = tmp_path / "dead.jsonl"
    run = run_target(h, tmp_path, pipelines(server, dead_letter_path=str(dead)), records(30))
    assert run.returncode == 1, run.stderr[-2000:]
    text = dead.read_text()
    assert_no_key(text, "the dead letters")
    assert_no_key(run.stderr, "stderr")
    rows = [json.loads(line) for line in text.splitlines()]
    assert rows and all(len(row["reason"]) <= 500 for row in rows)
    assert all("[redacted]" in row["reason"] for row in rows)


def test_a_status_phrase_quoting_the_key_reaches_no_log(h, tmp_path, serve):
    """httpx logs each answer's status line (at LOGLEVEL=DEBUG: the console a person follows at
    INFO is spared one line per request): a server may put the key in its phrase."""
    server = serve(hostile.echoing(400, in_reason=True))
    run = run_target(h, tmp_path, pipelines(server), records(3), env={"LOGLEVEL": "DEBUG"})
    assert run.returncode == 1, run.stderr[-2000:]
    assert "Refused /v1/batch Authorization: [redacted]" in run.stderr
    assert_no_key(run.stderr, "stderr")


def test_a_track_400_quoting_the_request_leaks_neither_site_id_nor_key(h, tmp_path, serve):
    server = serve(hostile.echoing(400, pad=10_000))
    dead = tmp_path / "dead.jsonl"
    config = {
        "api": "track",
        "track_site_id": SITE_ID,
        "track_api_key": TRACK_KEY,
        "track_api_url": server.url,
        "dead_letter_path": str(dead),
    }
    run = run_target(h, tmp_path, config, records(30))
    assert run.returncode == 1, run.stderr[-2000:]
    assert_no_key(dead.read_text(), "the dead letters")
    assert_no_key(run.stderr, "stderr")


# ------------------------------------------------------------------------ dead letters not kept
def test_a_dead_letter_file_that_cannot_be_written_stops_the_run_in_one_line(h, tmp_path, serve):
    server = serve(hostile.rejection(400, {"meta": {"errors": ["batch[0]: bad value"]}}))
    run = run_target(h, tmp_path, pipelines(server, dead_letter_path="/dev/full"), records(3))
    assert run.returncode == 1 and run.states == [], run.stderr[-2000:]
    (error,) = run.errors()
    assert "cannot write dead_letter_path /dev/full (No space left on device)" in error
    assert "Traceback" not in run.stderr
    (summary,) = [line for line in run.stderr.splitlines() if "Summary:" in line]
    assert "dead-lettered 0," in summary
