"""The SMTP side against misbehaving servers the sandbox world does not have.

Each test starts a small scripted SMTP server on loopback and points the prober at it; every run
must end quickly with an Unknown (never Invalid, never a hang, never a retry loop).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from mapper_emailverify import Status, SubStatus, VerifierConfig
from mapper_emailverify.engine.dns_lookup import DomainRoute, MailHost
from mapper_emailverify.engine.smtp.prober import Probe, SmtpProber
from mapper_emailverify.engine.smtp.session import SmtpSession, Timeouts

Script = Callable[
    [str, int], Awaitable[bytes | None]
]  # (command line, index) -> reply; None hangs up


async def serve(script: Script, banner: bytes = b"220 edge.example ESMTP\r\n", delay: float = 0.0):
    connections = []

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(time.monotonic())
        try:
            await asyncio.sleep(delay)
            writer.write(banner)
            index = 0
            while line := await reader.readline():
                await asyncio.sleep(delay)
                reply = await script(line.decode(errors="replace").strip(), index)
                index += 1
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
                if line.upper().startswith(b"QUIT"):
                    break
        except OSError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(client, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], connections


def standard(rcpt: bytes = b"250 2.1.5 OK\r\n") -> Script:
    async def script(line: str, index: int) -> bytes | None:
        verb = line.split(" ", 1)[0].upper()
        if verb == "EHLO":
            return b"250-edge.example\r\n250 ENHANCEDSTATUSCODES\r\n"
        if verb in ("HELO", "MAIL"):
            return b"250 OK\r\n"
        if verb == "QUIT":
            return b"221 bye\r\n"
        return rcpt

    return script


async def probe_all(
    port: int, addresses: list[str], **settings: object
) -> tuple[list[Probe], float]:
    config = VerifierConfig.from_settings(
        {
            "smtp_port": port,
            "smtp_timeout": 0.5,
            "smtp_session_linger": 0,
            "helo_hostname": "verifier.example",
            "allow_private_mx": True,  # the scripted servers listen on loopback
            **settings,
        }
    )
    prober = SmtpProber(config)
    route = DomainRoute("edge.example", None, (MailHost("mx.edge.example", 10, ("127.0.0.1",)),))
    started = time.monotonic()
    try:
        results = await asyncio.gather(*(prober.probe(route, a) for a in addresses))
    finally:
        await prober.aclose()
    return list(results), time.monotonic() - started


def run(
    script: Script,
    addresses: list[str],
    banner: bytes = b"220 edge.example ESMTP\r\n",
    delay: float = 0.0,
    **settings: object,
) -> tuple[list[Probe], float, int]:
    async def go() -> tuple[list[Probe], float, int]:
        server, port, connections = await serve(script, banner, delay)
        try:
            results, elapsed = await probe_all(port, addresses, **settings)
        finally:
            server.close()
        return results, elapsed, len(connections)

    return asyncio.run(go())


ADDRESSES = [f"user{i}@edge.example" for i in range(4)]


def test_connection_dropped_at_every_rcpt_is_bounded() -> None:
    async def script(line: str, index: int) -> bytes | None:
        return None if line.upper().startswith("RCPT") else await standard()(line, index)

    # Two sessions per host, as when the engine's default was 2 (the mapper's, 3, is now the
    # engine's too): a third worker can open a session that finds no recipient left to ask.
    results, elapsed, connections = run(script, ADDRESSES, max_connections_per_mx=2)
    assert {r.substatus for r in results} == {SubStatus.SMTP_CONNECTION_FAILED}
    assert connections <= 3 * len(ADDRESSES) + 2 and elapsed < 5


def test_garbage_replies() -> None:
    async def script(line: str, index: int) -> bytes | None:
        return b"hello there, I am not SMTP\r\n"

    results, elapsed, _ = run(script, ADDRESSES)
    assert {r.substatus for r in results} == {SubStatus.SMTP_CONNECTION_FAILED}
    assert elapsed < 3


def test_endless_line() -> None:
    async def script(line: str, index: int) -> bytes | None:
        return b"250-" + b"x" * 200_000 + b"\r\n250 OK\r\n"

    results, _, _ = run(script, ADDRESSES[:1])
    assert results[0].substatus is SubStatus.SMTP_CONNECTION_FAILED


def test_always_busy_banner_gives_up_after_a_few_tries() -> None:
    results, elapsed, connections = run(
        standard(), ADDRESSES, banner=b"421 4.7.0 Too busy, try later\r\n"
    )
    assert {r.substatus for r in results} == {SubStatus.SMTP_CONNECTION_FAILED}
    assert connections <= 6 and elapsed < 5


def test_slow_server_still_makes_progress() -> None:
    """Replies inside the command budget, a session budget below the setup: 1 RCPT/session."""
    results, elapsed, _ = run(
        standard(b"550 5.1.1 No such user\r\n"), ADDRESSES, delay=0.08, smtp_session_timeout=0.15
    )
    assert {r.substatus for r in results} == {SubStatus.MAILBOX_NOT_FOUND}
    assert elapsed < 10


def test_helo_fallback_and_multiline_rcpt() -> None:
    async def script(line: str, index: int) -> bytes | None:
        if line.upper().startswith("EHLO"):
            return b"500 5.5.1 Command unrecognized\r\n"
        if line.upper().startswith("RCPT"):
            return (
                b"550-5.1.1 The email account that you tried to reach does not exist.\r\n"
                b"550 5.1.1 https://support.example/?p=NoSuchUser\r\n"
            )
        return await standard()(line, index)

    results, _, _ = run(script, ADDRESSES[:2])
    assert {r.substatus for r in results} == {SubStatus.MAILBOX_NOT_FOUND}
    assert any(reply.command == "HELO" for reply in results[0].replies)


def test_tarpit_rcpt_answers_the_whole_domain_at_once() -> None:
    async def script(line: str, index: int) -> bytes | None:
        if line.upper().startswith("RCPT"):
            await asyncio.sleep(5)
        return await standard()(line, index)

    results, elapsed, _ = run(script, ADDRESSES * 3)
    assert {r.substatus for r in results} == {SubStatus.SMTP_TIMEOUT}
    assert elapsed < 2  # one command timeout, not one per address


def test_full_mailbox_permanent_is_invalid_temporary_is_unknown() -> None:
    async def script(line: str, index: int) -> bytes | None:
        if line.upper().startswith("RCPT TO:<NOW"):
            return b"452 4.2.2 Mailbox full, try again later\r\n"
        if line.upper().startswith("RCPT TO:<GONE"):
            return b"552 5.2.2 Mailbox full: user is over quota\r\n"
        return await standard(b"550 5.1.1 No such user\r\n")(line, index)

    results, _, _ = run(script, ["now@edge.example", "gone@edge.example"])
    assert [(r.status, r.substatus) for r in results] == [
        (Status.UNKNOWN, SubStatus.MAILBOX_FULL),
        (Status.INVALID, SubStatus.MAILBOX_FULL),
    ]


def test_internationalized_mailbox_needs_smtputf8() -> None:
    async def with_utf8(line: str, index: int) -> bytes | None:
        if line.upper().startswith("EHLO"):
            return b"250-edge.example\r\n250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n"
        if line.upper().startswith("MAIL"):
            return b"250 OK\r\n" if line.endswith("SMTPUTF8") else b"555 5.5.4 no SMTPUTF8\r\n"
        return await standard(b"250 2.1.5 OK\r\n" if "用户" in line else b"550 5.1.1 No\r\n")(
            line, index
        )

    async def go(script: Script) -> Probe:
        server, port, _ = await serve(script)
        try:
            config = VerifierConfig.from_settings(
                {"smtp_port": port, "smtp_timeout": 0.5, "allow_private_mx": True}
            )
            prober = SmtpProber(config)
            route = DomainRoute("edge.example", None, (MailHost("mx", 10, ("127.0.0.1",)),))
            try:
                return await prober.probe(route, "用户@edge.example", needs_utf8=True)
            finally:
                await prober.aclose()
        finally:
            server.close()

    assert asyncio.run(go(with_utf8)).substatus is None  # asked and accepted
    no_utf8 = standard(b"550 5.1.1 No\r\n")
    assert asyncio.run(go(no_utf8)).substatus is SubStatus.SMTP_UNAVAILABLE  # cannot be asked


# -- refusals of the probe itself (engine/smtp/setup_watch.py) ---------------------------------

SENDER_REFUSED = (
    b"550 5.1.8 <probe@unroutable.invalid>: Sender address rejected: Domain not found\r\n"
)


def _routes(count: int) -> list[DomainRoute]:
    return [
        DomainRoute(
            f"d{i}.example",
            None,
            (MailHost(f"mx.provider{i}.example", 10, ("127.0.0.1",)),),
        )
        for i in range(count)
    ]


def _probe_routes(port: int, routes: list[DomainRoute], **settings: object) -> list[object]:
    async def go() -> list[object]:
        config = VerifierConfig.from_settings(
            {
                "smtp_port": port,
                "smtp_timeout": 0.5,
                "smtp_session_linger": 0,
                "helo_hostname": "verifier.example",
                "mail_from": "probe@unroutable.invalid",
                "allow_private_mx": True,
                **settings,
            }
        )
        prober = SmtpProber(config)
        try:
            return await asyncio.gather(
                *(prober.probe(route, f"someone@{route.domain}") for route in routes),
                return_exceptions=True,
            )
        finally:
            await prober.aclose()

    return asyncio.run(go())


def _with_server(script: Script, run: Callable[[int], list[object]]) -> list[object]:
    async def serve_and_run() -> list[object]:
        server, port, _ = await serve(script)
        try:
            return await asyncio.to_thread(run, port)
        finally:
            server.close()

    return asyncio.run(serve_and_run())


def test_one_provider_refusing_our_sender_gives_its_addresses_unknown_blocked() -> None:
    results = _with_server(
        standard(SENDER_REFUSED), lambda port: _probe_routes(port, _routes(1), setup_grace=0.3)
    )
    [probe] = results
    assert isinstance(probe, Probe), probe
    assert probe.substatus is SubStatus.SMTP_BLOCKED and probe.about_us
    assert "about our sender" in probe.rule


def test_several_providers_refusing_our_sender_stop_the_run() -> None:
    from mapper_emailverify.engine.smtp.setup_watch import ProbeSetupError

    results = _with_server(
        standard(SENDER_REFUSED), lambda port: _probe_routes(port, _routes(4), setup_grace=5)
    )
    errors = [r for r in results if isinstance(r, ProbeSetupError)]
    assert len(errors) == len(results), results
    message = str(errors[0])
    assert "mail_from" in message and "probe@unroutable.invalid" in message
    assert "someone@" not in message  # no Person's address in the one line


def test_setup_watch_counts_providers_not_hosts() -> None:
    from mapper_emailverify.engine.smtp.replies import Reply, read_rcpt
    from mapper_emailverify.engine.smtp.setup_watch import SetupWatch, provider_of

    assert provider_of("alt1.aspmx.l.google.com") == provider_of("aspmx.l.google.com")
    assert provider_of("127.0.0.9") == "127.0.0.9"
    refusal = Reply(550, ("5.7.1 Service unavailable; Client host [203.0.113.9] blocked",))
    reading = read_rcpt(refusal)
    assert reading.about_us

    async def go() -> float:
        watch = SetupWatch(3, grace=5, sender="probe@x.example", helo="x.example")
        for host in ("mx1.google.com", "mx2.google.com", "mx3.google.com", "mx.other.example"):
            watch.refused(host, reading, refusal)
        assert watch.failure is None  # two providers, not four hosts
        for i in range(3):
            watch.answered(f"mx.answering{i}.example")
        started = time.monotonic()
        await watch.settle()  # more providers answer about mailboxes than refuse: no wait
        assert watch.confirmed
        return time.monotonic() - started

    assert asyncio.run(go()) < 1


def test_a_cancelled_quit_still_waits_for_the_server_to_hang_up() -> None:
    """The run ending (the prober's `aclose` cancels its sessions) while a session says QUIT:
    the session still waits, within QUIT's own timeout, for the server to hang up, so the mail
    host's slot is never given back while the server counts the connection (three mappers on one
    egress IP briefly held one connection too many this way)."""

    async def go() -> bool:
        hung_up = asyncio.Event()

        async def slow_quit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"220 edge.example ESMTP\r\n")
            await reader.readline()  # QUIT
            await asyncio.sleep(0.3)
            writer.write(b"221 2.0.0 Bye\r\n")
            writer.close()
            hung_up.set()

        server = await asyncio.start_server(slow_quit, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        session = SmtpSession(
            "mx.edge.example", "127.0.0.1", port, Timeouts(1.0, 1.0, 1.0), allow_private=True
        )
        await session.connect()
        quitting = asyncio.create_task(session.quit())
        await asyncio.sleep(0.05)
        quitting.cancel()
        with pytest.raises(asyncio.CancelledError):  # it still reaches the caller, after
            await quitting
        done = hung_up.is_set()
        server.close()
        return done

    assert asyncio.run(go())
