"""The `emailverify` backend against the sandbox's EmailVerify.io API.

Its answers are mapped onto our taxonomy; a bad key or an empty account gives Unknown, one clear log
line, and no further calls; the key never reaches a log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest
from cio_sandbox import Sandbox, hostile_http
from mapper_emailverify import Result, Verifier
from mapper_emailverify.engine.emailverify_api import MAX_TRIES

# EmailVerify.io says "no_dns_entries" for both a missing domain and a domain without mail records,
# and
# "mail_server_did_not_respond" for DNS failures too: the remote vocabulary cannot tell these apart.
REMOTE_AMBIGUOUS = {
    ("Invalid", "no_mx_record"): ("Invalid", "domain_not_found"),
    ("Unknown", "dns_error"): ("Unknown", "smtp_connection_failed"),
}


def remote_settings(sb: Sandbox, **over: Any) -> dict[str, Any]:
    return sb.mapper_config(backend="emailverify", **over)


def verify(settings: dict[str, Any], addresses: list[object]) -> list[Result]:
    async def go() -> list[Result]:
        async with Verifier(settings) as verifier:
            return await verifier.verify_many(addresses)

    return asyncio.run(go())


def test_remote_answers_map_onto_the_taxonomy(sandbox_faults_reset: Sandbox) -> None:
    sb, world = sandbox_faults_reset, sandbox_faults_reset.world
    people = [p for p in world.iter_people()][:600]
    bounces = [row["email"] for kind in world.HARD_BOUNCE_KINDS for row in world.suppressions(kind)]
    results = verify(remote_settings(sb, hard_bounces=bounces), [p.email for p in people])
    misses = []
    for person, result in zip(people, results, strict=True):
        got = (str(result.status), str(result.substatus))
        truth = (person.truth.status, person.truth.substatus)
        if got not in person.truth.accepted and REMOTE_AMBIGUOUS.get(truth) != got:
            misses.append((person.truth.case, truth, got))
        assert not (result.is_invalid and not person.truth.is_invalid), (person.truth.case, got)
        assert result.evidence.backend == "emailverify"
    # Disposable typo domains (gmial.com is on the disposable list) are the only disagreement.
    assert {case for case, _, _ in misses} <= {"typo"}, misses
    assert not sb.obs.rcpt and not sb.obs.dns_queries  # no probing of our own
    asked = sb.obs.requests_to("emailverify")
    assert 0 < asked <= len({p.email.strip().lower() for p in people if p.email})


def test_bad_key_is_one_clear_line_and_no_more_calls(
    sandbox_faults_reset: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    sb = sandbox_faults_reset
    caplog.set_level(logging.DEBUG)
    addresses = [
        sb.world.address_for("normal"),
        sb.world.address_for("gmail"),
        sb.world.address_for("m365"),
    ]
    results = verify(
        remote_settings(sb, emailverify_api_key="wrong-k3y-value", concurrency=1), addresses
    )
    assert {(str(r.status), str(r.substatus)) for r in results} == {("Unknown", "smtp_unavailable")}
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "emailverify_api_key" in errors[0]
    assert sb.obs.requests_to("emailverify") == 1
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "wrong-k3y-value" not in logged and sb.keys.emailverify_api_key not in logged


def test_out_of_credits(sandbox_faults_reset: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    sb, world = sandbox_faults_reset, sandbox_faults_reset.world
    sb.obs.faults.emailverify_credits = 2
    caplog.set_level(logging.INFO)
    addresses = [
        p.email for p in world.iter_people() if p.truth.case == "normal" and p.mailbox == "exists"
    ][:6]
    results = verify(remote_settings(sb, concurrency=1), addresses)
    assert sorted(str(r.status) for r in results) == ["Unknown"] * 4 + ["Valid"] * 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "credits" in errors[0]
    assert sb.obs.requests_to("emailverify") == 3
    assert sb.keys.emailverify_api_key not in "\n".join(r.getMessage() for r in caplog.records)
    assert not any(
        a.strip().lower() in r.getMessage().lower() for r in caplog.records for a in addresses
    )


def test_local_checks_run_before_the_api(sandbox_faults_reset: Sandbox) -> None:
    sb = sandbox_faults_reset
    results = verify(remote_settings(sb), [None, "not-an-address", "x@mailinator.com"])
    assert [str(r.substatus) for r in results] == [
        "no_email",
        "invalid_syntax",
        "disposable_domain",
    ]
    assert sb.obs.requests_to("emailverify") == 0


def test_rate_limits_and_server_errors_are_retried() -> None:
    """429 waits for Retry-After, 5xx is retried, then the answer (a local stand-in server)."""
    from aiohttp import web

    calls: list[float] = []
    answers = [
        web.json_response({"error": "Too many requests"}, status=429, headers={"Retry-After": "1"}),
        web.json_response({"error": "Please Try again"}, status=503),
    ]

    async def validate(request: web.Request) -> web.Response:
        calls.append(time.monotonic())
        if answers:
            return answers.pop(0)
        return web.json_response(
            {"email": request.query["email"], "status": "valid", "sub_status": "permitted"}
        )

    async def go() -> Result:
        app = web.Application()
        app.router.add_get("/api/v1/validate", validate)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            settings = {
                "backend": "emailverify",
                "emailverify_api_key": "k",
                "emailverify_api_url": f"http://127.0.0.1:{port}",
            }
            async with Verifier(settings) as verifier:
                return await verifier.verify("maria@example.com")
        finally:
            await runner.cleanup()

    result = asyncio.run(go())
    assert (str(result.status), str(result.substatus)) == ("Valid", "mailbox_exists")
    assert len(calls) == 3 and calls[1] - calls[0] >= 0.9  # Retry-After honoured


# ---------------------------------------------------------------------- hostile answers (issue 16)
# An EmailVerify.io answer is bounded in time (`emailverify_timeout` covers connect, headers and
# body) and in size (`MAX_ANSWER_BYTES`), and a server's words reach no trail or log with the key.
HOSTILE_KEY = "EvKey-SECRET-0d9e8f7a6b5c"


@pytest.fixture
def hostile_server() -> Any:
    servers: list[hostile_http.HostileHTTP] = []

    def start(reply: Any) -> hostile_http.HostileHTTP:
        servers.append(hostile_http.HostileHTTP(reply).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def hostile_settings(server: Any, **over: Any) -> dict[str, Any]:
    return {
        "backend": "emailverify",
        "emailverify_api_key": HOSTILE_KEY,
        "emailverify_api_url": server.url,
        **over,
    }


@pytest.mark.slow  # four tries of 1 s and the waits between them: 7.5 s
@pytest.mark.parametrize("head", [False, True], ids=["body", "head"])
def test_a_trickled_answer_ends_at_emailverify_timeout(hostile_server: Any, head: bool) -> None:
    reply = hostile_http.trickle_head(0.25) if head else hostile_http.trickle(every=0.25)
    server = hostile_server(reply)  # about 10 s per try without a deadline
    started = time.monotonic()
    (result,) = verify(hostile_settings(server, emailverify_timeout=1), ["maria@example.com"])
    elapsed = time.monotonic() - started
    assert server.requests == MAX_TRIES
    assert elapsed < MAX_TRIES * 1 + 3.5 + 2  # each try's deadline, the waits between them
    assert (str(result.status), str(result.substatus)) == ("Unknown", "smtp_unavailable")
    assert "no complete answer within 1 s" in result.evidence.decided_by


def test_an_answer_quoting_the_key_reaches_no_trail_or_log(
    hostile_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = hostile_server(hostile_http.echoing(400, pad=20_000))
    (result,) = verify(hostile_settings(server), ["maria@example.com"])
    assert HOSTILE_KEY in server.seen[0].target  # the key travels in the query string
    trail = json.dumps(result.to_dict())
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for text in (trail, logged):
        assert HOSTILE_KEY not in text
    assert "key=[redacted]" in result.evidence.decided_by
    assert len(result.evidence.decided_by) <= 500


def test_a_status_phrase_carrying_the_key_reaches_no_log(
    hostile_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """httpx logs each answer's status line at INFO, the server's own phrase included."""
    caplog.set_level(logging.DEBUG)
    reply = hostile_http.Reply(status=400, reason=f"no such key {HOSTILE_KEY} here")
    server = hostile_server(reply)
    (result,) = verify(hostile_settings(server), ["maria@example.com"])
    assert server.requests == 1 and str(result.status) == "Unknown"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "no such key [redacted] here" in logged
    assert HOSTILE_KEY not in logged
