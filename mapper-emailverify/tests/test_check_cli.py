"""`emailverify-check ADDRESS...`, run as the installed executable against the sandbox."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cio_sandbox import Sandbox, hostile_http

EXE = str(Path(sys.executable).with_name("emailverify-check"))


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=60, check=False)


def test_prints_verdict_and_trail(sandbox: Sandbox) -> None:
    world = sandbox.world
    valid, gone = world.address_for("normal"), world.address_for("normal", "unknown")
    done = check(
        "--dns-nameserver",
        sandbox.dns_nameserver,
        "--smtp-port",
        str(sandbox.smtp_port),
        "--allow-private-mx",  # the sandbox's mail hosts are on loopback
        valid,
        gone,
        "maria@gmial.com",
        "not an address",
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"{valid}: Valid/mailbox_exists" in out
    assert f"{gone}: Invalid/mailbox_not_found" in out
    assert "maria@gmial.com: Disposable/disposable_domain" in out
    assert "did you mean: @gmail.com" in out
    assert "'not an address': Invalid/invalid_syntax" in out
    domain = valid.rsplit("@", 1)[1]
    assert f"dns: MX {domain}: 10 mx1.{domain}." in out  # the records looked up
    assert "RCPT -> 250 2.1.5" in out and "RCPT -> 550" in out  # the SMTP reply codes
    assert "catch-all domain: no" in out
    # Every verdict names the rule that decided it and the reply it read.
    gone_block = out.split(f"{gone}: ", 1)[1].split("\n\n", 1)[0]
    assert "decided by: smtp: 3 mailbox phrase: mailbox not found" in gone_block
    assert "reading: " in gone_block and "RCPT -> 550" in gone_block
    assert "decided by: disposable: gmial.com is on the disposable list" in out


def test_json_output_and_config_file(sandbox: Sandbox, tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(sandbox.mapper_config(smtp_timeout=2)), encoding="utf-8")
    catch_all = sandbox.world.address_for("catch_all")
    done = check("--config", str(settings), "--json", catch_all, "someone@null-mx-0.example")
    assert done.returncode == 0, done.stderr
    first, second = (json.loads(line) for line in done.stdout.splitlines())
    assert (first["status"], first["substatus"]) == ("Catch-All", "catch_all")
    assert first["evidence"]["catch_all"] is True and first["evidence"]["smtp_replies"]
    assert (second["status"], second["substatus"]) == ("Invalid", "null_mx")
    assert "dns: MX null-mx-0.example: 0 . (ttl 300)" in second["evidence"]["steps"]
    assert first["evidence"]["decided_by"].startswith("smtp: catch-all")
    assert second["evidence"]["decided_by"] == "dns: MX null-mx-0.example: 0 . (ttl 300)"


def test_bad_config_is_one_line_that_says_what_to_do(tmp_path: Path) -> None:
    done = check("--backend", "emailverify", "a@b.example")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "emailverify_api_key" in done.stderr


# ---------------------------------------------------------------------- hostile answers (issue 16)
HOSTILE_KEY = "EvKey-SECRET-0d9e8f7a6b5c"
MEMORY_LIMIT = 1536 * 1024 * 1024


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def check_against(server: Any, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    settings = tmp_path / "settings.json"
    settings.write_text(
        json.dumps(
            {
                "backend": "emailverify",
                "emailverify_api_key": HOSTILE_KEY,
                "emailverify_api_url": server.url,
                "emailverify_timeout": 5,
            }
        ),
        encoding="utf-8",
    )
    return subprocess.run(
        [EXE, "--config", str(settings), *args],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limit_memory,
        check=False,
    )


@pytest.fixture
def hostile_server() -> Iterator[Callable[[Any], Any]]:
    servers: list[hostile_http.HostileHTTP] = []

    def start(reply: Any) -> hostile_http.HostileHTTP:
        servers.append(hostile_http.HostileHTTP(reply).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def test_an_echoed_key_is_not_printed(hostile_server: Any, tmp_path: Path) -> None:
    server = hostile_server(hostile_http.echoing(400))
    done = check_against(server, tmp_path, "maria@example.com")
    assert done.returncode == 0, done.stderr
    assert HOSTILE_KEY in server.seen[0].target
    assert HOSTILE_KEY not in done.stdout and HOSTILE_KEY not in done.stderr
    assert "maria@example.com: Unknown/smtp_unavailable" in done.stdout
    assert "key=[redacted]" in done.stdout


def test_terminal_escapes_from_the_server_are_not_printed_raw(
    hostile_server: Any, tmp_path: Path
) -> None:
    answer = {"status": "valid\x1b[2J\x1b]0;pwned\x07", "sub_status": "\x1b[31mred\u202e"}
    server = hostile_server(hostile_http.rejection(200, answer))
    done = check_against(server, tmp_path, "maria@example.com")
    assert done.returncode == 0, done.stderr
    for raw in ("\x1b", "\x07", "\u202e"):
        assert raw not in done.stdout
    assert "\\x1b[2J" in done.stdout  # shown, made visible
    as_json = check_against(server, tmp_path, "--json", "maria@example.com")
    assert json.loads(as_json.stdout)["evidence"]["decided_by"].count("\x1b") == 3  # data intact


@pytest.mark.parametrize(
    "reply", [hostile_http.endless(), hostile_http.huge()], ids=["endless", "huge"]
)
def test_an_endless_or_huge_answer_is_cut_at_the_cap(
    hostile_server: Any, tmp_path: Path, reply: hostile_http.Reply
) -> None:
    server = hostile_server(reply)
    started = time.monotonic()
    done = check_against(server, tmp_path, "maria@example.com")
    assert done.returncode == 0, done.stderr[-2000:]
    assert time.monotonic() - started < 20
    assert "maria@example.com: Unknown/smtp_unavailable" in done.stdout
    assert "an answer larger than 64 KB" in done.stdout
    assert server.bytes_sent < 64 * 1024 * 1024
