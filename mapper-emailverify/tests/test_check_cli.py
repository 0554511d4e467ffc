"""`emailverify-check ADDRESS...`, run as the installed executable against the sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cio_sandbox import Sandbox

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
