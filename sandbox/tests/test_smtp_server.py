"""Each mail host of the world behaves like its real-world counterpart, seen through smtplib."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Iterator

import pytest
from cio_sandbox import Sandbox, World
from cio_sandbox.world import ROLE_MAILBOXES

SENDER = "probe@verifier.sandbox.example"
MakeSandbox = Callable[..., Sandbox]


def _host_ip(world: World, address_or_domain: str) -> str:
    """The address of the domain's most preferred live mail host, as a verifier would find it."""
    domain = address_or_domain.strip().rpartition("@")[2].lower().encode("idna").decode()
    entry = world.domains[domain]
    exchanges = [host for _, host in sorted(entry.mx)] or [domain]
    ips = [world.zone[host.rstrip(".")]["A"][0] for host in exchanges]
    return next(ip for ip in ips if ip in world.smtp_hosts)


def _domain_of(world: World, case: str, index: int = 0) -> str:
    return sorted(name for name, d in world.domains.items() if d.kind == case)[index]


@contextlib.contextmanager
def _smtp(
    sb: Sandbox, ip: str, *, timeout: float = 5.0, source: str | None = None
) -> Iterator[smtplib.SMTP]:
    client = smtplib.SMTP(
        ip, sb.smtp_port, timeout=timeout, source_address=(source, 0) if source else None
    )
    try:
        yield client
    finally:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            client.quit()
        client.close()


def _probe(
    sb: Sandbox, address: str, *, sender: str = SENDER, source: str | None = None
) -> tuple[int, bytes]:
    """One verifier-style session: EHLO, MAIL, RCPT; the RCPT reply."""
    with _smtp(sb, _host_ip(sb.world, address), source=source) as client:
        client.ehlo("verifier.sandbox.example")
        assert client.mail(sender)[0] == 250
        return client.rcpt(address.strip())


def _wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _ended(sock: socket.socket) -> bool:
    """True when the server closed or reset the connection (rather than leaving it hanging)."""
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


def _world_with(behavior: str, **changes: object) -> World:
    """The default world with its ``behavior`` hosts changed (e.g. a test-sized greylist window)."""
    world = World(seed=7, people=3000)
    for ip, host in world.smtp_hosts.items():
        if host.behavior == behavior:
            world.smtp_hosts[ip] = dataclasses.replace(host, **changes)
    return world


# ---------------------------------------------------------------------- honest mail hosts
@pytest.mark.parametrize(
    ("mailbox", "code", "enhanced", "words"),
    [
        ("exists", 250, b"2.1.5", b"OK"),
        ("disabled", 550, b"5.2.1", b"disabled"),
        ("full", 552, b"5.2.2", b"over quota"),
    ],
)
def test_mailbox_states(
    sandbox: Sandbox, mailbox: str, code: int, enhanced: bytes, words: bytes
) -> None:
    reply = _probe(sandbox, sandbox.world.address_for("normal", mailbox))
    assert reply[0] == code
    assert reply[1].startswith(enhanced)
    assert words in reply[1]


def test_unknown_mailbox_gets_the_hosts_own_wording(sandbox: Sandbox) -> None:
    world = sandbox.world
    address = world.address_for("normal", "unknown")
    code, text = _probe(sandbox, address)
    host = world.smtp_hosts[_host_ip(world, address)]
    assert code == 550
    assert text.decode() == host.unknown_reply.format(rcpt=address.lower())[4:]
    gmail = _probe(sandbox, "no.such.user.ever@gmail.com")
    assert gmail == (
        550,
        b"5.1.1 The email account that you tried to reach does not exist. NoSuchUser",
    )
    m365 = _probe(sandbox, f"nobody@{_domain_of(world, 'm365')}")
    assert m365[0] == 550 and m365[1].startswith(b"5.4.1 Recipient address rejected: Access denied")


def test_role_mailboxes_exist_and_addresses_are_case_insensitive(sandbox: Sandbox) -> None:
    domain = _domain_of(sandbox.world, "normal")
    assert _probe(sandbox, f"{ROLE_MAILBOXES[0]}@{domain}")[0] == 250
    address = sandbox.world.address_for("normal", "exists")
    assert _probe(sandbox, address.upper())[0] == 250


def test_banner_ehlo_and_data_refusal(sandbox: Sandbox) -> None:
    domain = _domain_of(sandbox.world, "normal")
    ip = _host_ip(sandbox.world, domain)
    with _smtp(sandbox, ip) as client:
        assert client.ehlo("verifier.sandbox.example")[0] == 250
        assert client.has_extn("enhancedstatuscodes")
        assert not client.has_extn("starttls")
        assert not client.has_extn("auth")
        client.mail(SENDER)
        client.rcpt(f"info@{domain}")
        code, text = client.docmd("DATA")
        assert (code, text) == (554, b"5.7.1 This sandbox accepts no messages")
        assert client.noop()[0] == 250
    with _smtp(sandbox, ip) as client:
        assert client.docmd("MAIL", "FROM:<>")[0] == 503  # HELO/EHLO first, like any MTA
        client.helo("verifier.sandbox.example")
        assert client.docmd("MAIL", "FROM:<>")[0] == 250  # the null reverse-path is accepted


def test_catch_all_and_accept_all_take_every_recipient(sandbox: Sandbox) -> None:
    random_local = "zq8v0k3x9w2m1t7"  # the random probe verifiers use to detect catch-all
    catch_all = _domain_of(sandbox.world, "catch_all")
    assert _probe(sandbox, f"{random_local}@{catch_all}") == (250, b"2.1.5 OK")
    assert _probe(sandbox, f"{random_local}@yahoo.com") == (250, b"2.1.5 OK")


def test_dead_ips_refuse_connections(sandbox: Sandbox) -> None:
    for ip in sandbox.world.dead_ips:
        with pytest.raises(ConnectionRefusedError):
            smtplib.SMTP(ip, sandbox.smtp_port, timeout=3)


# -------------------------------------------------------------- greylisting, tarpits, blocks
def test_greylisting_defers_the_first_try_then_accepts(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(_world_with("greylist", greylist_seconds=0.5))
    address = sb.world.address_for("greylist")
    first = _probe(sb, address)
    assert first == (451, b"4.7.1 Greylisted, please try again later")
    assert _probe(sb, address)[0] == 451  # retried too early
    assert _probe(sb, address, sender="other@verifier.sandbox.example")[0] == 451  # a new triple
    time.sleep(0.6)
    assert _probe(sb, address) == (250, b"2.1.5 OK")
    # Another client address makes a new triple.
    assert _probe(sb, address, source="127.0.0.2")[0] == 451


def test_tarpit_holds_the_banner(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(_world_with("tarpit", tarpit_seconds=0.4))
    address = sb.world.address_for("tarpit")
    ip = _host_ip(sb.world, address)
    start = time.monotonic()
    with _smtp(sb, ip) as client:
        assert time.monotonic() - start >= 0.35  # the banner came late
        assert client.ehlo("verifier.sandbox.example")[0] == 250
    # A verifier with a short timeout gives up; the server lets go of the connection.
    with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
        smtplib.SMTP(ip, sb.smtp_port, timeout=0.15)
    assert _wait_until(lambda: sb.obs.smtp_open_now(ip) == 0)


def test_default_tarpit_outlasts_a_verifier_timeout(sandbox: Sandbox) -> None:
    ip = _host_ip(sandbox.world, _domain_of(sandbox.world, "tarpit"))
    with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
        smtplib.SMTP(ip, sandbox.smtp_port, timeout=0.3)


def test_policy_block_at_rcpt(sandbox: Sandbox) -> None:
    code, text = _probe(sandbox, f"info@{_domain_of(sandbox.world, 'policy_block', 0)}")
    assert code == 550
    assert text.startswith(b"5.7.1 Service unavailable; Client host [127.0.0.1] blocked")
    assert text.endswith(b"using zen.spamhaus.org")


def test_policy_block_at_the_banner(sandbox: Sandbox) -> None:
    ip = _host_ip(sandbox.world, _domain_of(sandbox.world, "policy_block", 1))
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        smtplib.SMTP(ip, sandbox.smtp_port, timeout=3)
    assert refused.value.smtp_code == 554
    assert b"5.7.1" in refused.value.smtp_error
    assert b"IP address is block listed" in refused.value.smtp_error
    assert _wait_until(lambda: sandbox.obs.smtp_open_now(ip) == 0)


def test_drop_after_banner(sandbox: Sandbox) -> None:
    ip = _host_ip(sandbox.world, _domain_of(sandbox.world, "drop_after_banner"))
    client = smtplib.SMTP(ip, sandbox.smtp_port, timeout=3)
    try:
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.ehlo("verifier.sandbox.example")
    finally:
        client.close()


def test_too_many_recipients_per_session(sandbox: Sandbox) -> None:
    world = sandbox.world
    domain = _domain_of(world, "too_many_rcpt")
    ip = _host_ip(world, domain)
    limit = world.smtp_hosts[ip].max_rcpt_per_session
    assert limit is not None
    with _smtp(sandbox, ip) as client:
        client.ehlo("verifier.sandbox.example")
        client.mail(SENDER)
        for k in range(limit):
            assert client.rcpt(f"{ROLE_MAILBOXES[k % len(ROLE_MAILBOXES)]}@{domain}")[0] == 250
        assert client.rcpt(f"info@{domain}") == (452, b"4.5.3 Too many recipients")
        client.rset()  # RSET starts a new transaction, not a new session
        client.mail(SENDER)
        assert client.rcpt(f"info@{domain}")[0] == 452
    assert _probe(sandbox, f"info@{domain}")[0] == 250  # a new connection starts over


def test_busy_host_refuses_connections_over_its_limit(sandbox_faults_reset: Sandbox) -> None:
    sb = sandbox_faults_reset
    ip = _host_ip(sb.world, _domain_of(sb.world, "busy_421"))
    limit = sb.world.smtp_hosts[ip].max_connections
    assert limit is not None
    with contextlib.ExitStack() as held:
        for _ in range(limit):
            held.enter_context(_smtp(sb, ip))
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            smtplib.SMTP(ip, sb.smtp_port, timeout=3)
        assert refused.value.smtp_code == 421
        assert refused.value.smtp_error.startswith(b"4.7.0 Too many concurrent connections")
    assert _wait_until(lambda: sb.obs.smtp_open_now(ip) == 0)
    with _smtp(sb, ip) as client:  # room again once the others are gone
        assert client.ehlo("verifier.sandbox.example")[0] == 250
    assert sb.obs.smtp_connections[ip] == limit + 2
    assert sb.obs.smtp_peak_concurrency[ip] == limit + 1


def test_starttls_is_required_before_mail(sandbox: Sandbox) -> None:
    address = sandbox.world.address_for("starttls", "unknown")
    ip = _host_ip(sandbox.world, address)
    with _smtp(sandbox, ip) as client:
        client.ehlo("verifier.sandbox.example")
        assert client.has_extn("starttls")
        assert client.mail(SENDER) == (530, b"5.7.0 Must issue a STARTTLS command first")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # verifiers upgrade without checking certificates
        assert client.starttls(context=context)[0] == 220
        client.ehlo("verifier.sandbox.example")
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt(address)[0] == 550
        assert client.rcpt(f"info@{address.rpartition('@')[2]}")[0] == 250
        sock = client.sock
        assert isinstance(sock, ssl.SSLSocket)  # STARTTLS swapped in a TLS socket
        cert = sock.getpeercert(binary_form=True)
        assert cert


def test_failed_tls_handshake_closes_only_that_session(sandbox: Sandbox) -> None:
    ip = _host_ip(sandbox.world, _domain_of(sandbox.world, "starttls"))
    with socket.create_connection((ip, sandbox.smtp_port), timeout=3) as raw:
        replies = raw.makefile("rb")
        assert replies.readline().startswith(b"220 ")
        raw.sendall(b"EHLO verifier.sandbox.example\r\n")
        while replies.readline()[3:4] == b"-":
            pass
        raw.sendall(b"STARTTLS\r\n")
        assert replies.readline().startswith(b"220 ")
        raw.sendall(b"this is no TLS client hello\r\n" * 4)
        assert replies.read() == b""  # the server hangs up
        replies.close()
    assert _wait_until(lambda: sandbox.obs.smtp_open_now(ip) == 0)
    with _smtp(sandbox, ip) as client:
        assert client.ehlo("verifier.sandbox.example")[0] == 250


def test_helo_only_host(sandbox: Sandbox) -> None:
    address = sandbox.world.address_for("no_mx_a", "exists")
    ip = _host_ip(sandbox.world, address)
    with _smtp(sandbox, ip) as client:
        assert client.ehlo("verifier.sandbox.example") == (
            502,
            b"5.5.2 Error: command not recognized",
        )
        assert client.docmd("MAIL", f"FROM:<{SENDER}>")[0] == 503  # EHLO failed: no session yet
        assert client.helo("verifier.sandbox.example")[0] == 250
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt(address)[0] == 250


# ---------------------------------------------------------------------- faults and observations
def test_latency_fault_delays_every_reply(sandbox_faults_reset: Sandbox) -> None:
    sb = sandbox_faults_reset
    sb.obs.faults.smtp_latency = 0.15
    start = time.monotonic()
    _probe(sb, f"info@{_domain_of(sb.world, 'normal')}")  # banner, EHLO, MAIL, RCPT: four replies
    assert time.monotonic() - start >= 0.5


def test_host_latency_from_the_world(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(World(seed=7, people=3000, smtp_latency=0.2))
    ip = _host_ip(sb.world, _domain_of(sb.world, "normal"))
    start = time.monotonic()
    with _smtp(sb, ip) as client:
        banner = time.monotonic() - start
        start = time.monotonic()
        client.ehlo("verifier.sandbox.example")
        ehlo = time.monotonic() - start
        lines = len(client.esmtp_features) + 1
    assert banner >= 0.15
    assert lines >= 5
    assert 0.15 <= ehlo < 0.2 * lines  # one delay for the whole multi-line reply


def test_counters_see_connections_and_recipients(sandbox_faults_reset: Sandbox) -> None:
    sb = sandbox_faults_reset
    address = sb.world.address_for("normal", "exists")
    ip = _host_ip(sb.world, address)
    _probe(sb, address.upper())
    _probe(sb, address)
    assert sb.obs.rcpt[address.lower()] == 2
    assert sb.obs.smtp_connections[ip] == 2
    assert sb.obs.smtp_peak_concurrency[ip] == 1
    assert _wait_until(lambda: sb.obs.smtp_open_now(ip) == 0)


def test_many_concurrent_sessions_on_many_hosts(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox(World(seed=7, people=3000, domains=500))
    hosts = [ip for ip, h in sb.world.smtp_hosts.items() if h.behavior == "normal" and h.esmtp]
    assert len(hosts) >= 500
    sessions = 600

    async def session(ip: str, hold: asyncio.Event) -> bytes:
        reader, writer = await asyncio.open_connection(ip, sb.smtp_port)
        try:
            banner = await reader.readline()
            await hold.wait()
            writer.write(b"QUIT\r\n")
            await writer.drain()
            await reader.readline()
            return banner
        finally:
            writer.close()

    def open_now() -> int:
        return sum(sb.obs.smtp_open_now(ip) for ip in set(hosts))

    async def run() -> list[bytes]:
        hold = asyncio.Event()
        tasks = [asyncio.create_task(session(hosts[k % len(hosts)], hold)) for k in range(sessions)]
        while open_now() < sessions and not any(t.done() for t in tasks):
            await asyncio.sleep(0.05)
        hold.set()
        return await asyncio.gather(*tasks)

    banners = asyncio.run(asyncio.wait_for(run(), 60))
    assert all(b.startswith(b"220 ") for b in banners)
    assert sum(sb.obs.smtp_connections.values()) == sessions
    assert sum(sb.obs.snapshot()["smtp_peak_concurrency"].values()) == sessions


def test_stopping_the_sandbox_ends_open_sessions(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox()
    tarpit = _host_ip(sb.world, _domain_of(sb.world, "tarpit"))
    normal = _host_ip(sb.world, _domain_of(sb.world, "normal"))
    held = [socket.create_connection((ip, sb.smtp_port), timeout=3) for ip in (tarpit, normal) * 2]
    try:
        assert _wait_until(
            lambda: sb.obs.smtp_open_now(tarpit) == sb.obs.smtp_open_now(normal) == 2
        )
        sb.stop()
        assert sb.obs.smtp_open_now(tarpit) == sb.obs.smtp_open_now(normal) == 0
        for sock in held[::2]:  # the tarpit sessions that were still waiting for their banner
            assert _ended(sock)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((normal, sb.smtp_port), timeout=3)
    finally:
        for sock in held:
            sock.close()


@pytest.mark.parametrize("code", [450, 550])
def test_sender_domain_check_refuses_every_recipient_of_an_unknown_sender_domain(
    sandbox_faults_reset: Sandbox, code: int
) -> None:
    sb = sandbox_faults_reset
    sb.obs.faults.smtp_sender_domain_check = code
    address = sb.world.address_for("normal")
    reply_code, text = _probe(sb, address, sender="probe@unroutable.invalid")
    assert reply_code == code
    assert f"{str(code)[0]}.1.8" in text.decode() and b"Sender address rejected" in text
    # The sandbox's own verifier name resolves, so the ready-made configuration still works.
    assert _probe(sb, address)[0] == 250
