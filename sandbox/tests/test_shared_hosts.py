"""Shared mail hosts and shared sessions (issue 19): a world where most addresses sit on three
hosts serving many custom domains; PIPELINING, RSET, per-client RCPT rate limits and the counters
that measure recipients per session, per transaction and per minute."""

from __future__ import annotations

import contextlib
import dataclasses
import smtplib
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import dns.resolver
import pytest
from cio_sandbox import Sandbox, World
from cio_sandbox.world import (
    MAILBOX_CASES,
    SHARED_EOP_HOST,
    SHARED_HOST_CASE_WEIGHTS,
    SHARED_HOSTING_HOST,
    SHARED_WORKSPACE_HOST,
)

MakeSandbox = Callable[..., Sandbox]
SENDER = "probe@verifier.sandbox.example"
SHARED_HOSTS = (SHARED_WORKSPACE_HOST, SHARED_EOP_HOST, SHARED_HOSTING_HOST)
SHARED_KINDS = {
    "shared_workspace": (SHARED_WORKSPACE_HOST, "google_workspace"),
    "shared_m365": (SHARED_EOP_HOST, "microsoft365"),
    "shared_hosting": (SHARED_HOSTING_HOST, None),
}
GOOGLE_RATE = (
    "421 4.7.28 [127.0.0.1] Our system has detected an unusual rate of unsolicited mail "
    "originating from your IP address. To protect our users from spam, mail sent from your IP "
    "address has been temporarily rate limited."
)


@pytest.fixture(scope="module")
def shared_sandbox() -> Iterator[Sandbox]:
    world = World(seed=7, people=3000, shared_domains=300, case_weights=SHARED_HOST_CASE_WEIGHTS)
    with Sandbox(world) as sb:
        yield sb


@pytest.fixture
def sb(shared_sandbox: Sandbox) -> Iterator[Sandbox]:
    """The shared-host world's sandbox with faults and counters reset around the test (once the
    sessions of the test before have ended, so that they are not counted in this one)."""
    obs, ips = shared_sandbox.obs, list(shared_sandbox.world.smtp_hosts)
    assert _wait_until(lambda: not any(obs.smtp_open_now(ip) for ip in ips))
    shared_sandbox.obs.reset_faults()
    shared_sandbox.obs.reset_counters()
    yield shared_sandbox
    shared_sandbox.obs.reset_faults()


def _ip_of(world: World, hostname: str) -> str:
    return next(ip for ip, host in world.smtp_hosts.items() if host.hostname == hostname)


def _mx_ip(world: World, address_or_domain: str) -> str:
    domain = address_or_domain.strip().rpartition("@")[2].lower()
    (_, exchange), *_ = sorted(world.domains[domain].mx)
    return world.zone[exchange]["A"][0]


@contextlib.contextmanager
def _smtp(sb: Sandbox, ip: str, source: str | None = None) -> Iterator[smtplib.SMTP]:
    """EHLO and MAIL FROM done."""
    client = smtplib.SMTP(
        ip, sb.smtp_port, timeout=5, source_address=(source, 0) if source else None
    )
    try:
        assert client.ehlo("verifier.sandbox.example")[0] == 250
        assert client.mail(SENDER)[0] == 250
        yield client
    finally:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            client.quit()
        client.close()


class Raw:
    """A plain socket session, for writing several commands at once and reading replies in order."""

    def __init__(self, sb: Sandbox, ip: str) -> None:
        self.sock = socket.create_connection((ip, sb.smtp_port), timeout=5)
        self.file = self.sock.makefile("rb")

    def reply(self) -> str:
        """One whole reply (its lines joined by newlines), without CRLFs."""
        lines: list[str] = []
        while True:
            line = self.file.readline()
            assert line.endswith(b"\r\n"), (lines, line)
            lines.append(line[:-2].decode())
            if line[3:4] != b"-":
                return "\n".join(lines)

    def send(self, *commands: str) -> None:
        """All the commands in one write."""
        self.sock.sendall(b"".join(f"{c}\r\n".encode() for c in commands))

    def ended(self) -> bool:
        try:
            return self.file.read(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@contextlib.contextmanager
def _raw(sb: Sandbox, ip: str) -> Iterator[Raw]:
    raw = Raw(sb, ip)
    try:
        assert raw.reply().startswith("220 ")
        yield raw
    finally:
        raw.close()


def _wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _code(status: str) -> int:
    return {"Valid": 250, "Invalid": 550}[status]


# ---------------------------------------------------------------------- the world
def test_the_default_world_has_no_shared_hosts_and_the_option_keeps_everything_else() -> None:
    default = World()
    assert default.shared_domains == 0
    assert not any(d.kind.startswith("shared_") for d in default.domains.values())
    assert {h.hostname for h in default.smtp_hosts.values()}.isdisjoint(SHARED_HOSTS[1:])
    shared = World(shared_domains=30)
    # New hosts only after every existing one; the default mix's People are the same.
    assert list(shared.smtp_hosts.items())[: len(default.smtp_hosts)] == list(
        default.smtp_hosts.items()
    )
    assert [h.hostname for h in list(shared.smtp_hosts.values())[len(default.smtp_hosts) :]] == [
        SHARED_EOP_HOST,
        SHARED_HOSTING_HOST,
    ]
    for i in range(300):
        assert shared.person(i) == default.person(i)
    assert all(host.pipelining for host in default.smtp_hosts.values())
    assert not any(host.refuse_rset for host in default.smtp_hosts.values())
    assert all(host.max_rcpt_per_minute is None for host in default.smtp_hosts.values())


def test_bad_options_are_value_errors() -> None:
    with pytest.raises(ValueError, match="shared_domains"):
        World(shared_domains=2)
    with pytest.raises(ValueError, match=r"shared_workspace.*shared_domains"):
        World(people=10, case_weights=SHARED_HOST_CASE_WEIGHTS)


def test_most_people_sit_on_three_hosts_serving_many_domains(sb: Sandbox) -> None:
    world = sb.world
    kinds = Counter(d.kind for d in world.domains.values() if d.kind in SHARED_KINDS)
    assert kinds == {"shared_workspace": 120, "shared_m365": 90, "shared_hosting": 90}
    assert set(SHARED_KINDS) <= MAILBOX_CASES
    on_host: Counter[str] = Counter()
    domains_per_host: dict[str, set[str]] = {}
    people = [p for p in world.iter_people() if p.email and p.truth.case != "nxdomain"]
    for person in people:
        assert person.email is not None
        domain = person.email.strip().rpartition("@")[2].lower()
        if domain not in world.domains or not world.domains[domain].mx:
            continue
        host = world.smtp_hosts[_mx_ip(world, domain)].hostname
        on_host[host] += 1
        domains_per_host.setdefault(host, set()).add(domain)
    everyone = len(list(world.iter_people()))
    assert sum(on_host[h] for h in SHARED_HOSTS) >= 0.78 * everyone
    for host in SHARED_HOSTS:
        assert len(domains_per_host[host]) >= 80, host  # many domains with People on each host
    assert on_host["gmail-smtp-in.l.google.com"] >= 0.08 * everyone


def test_people_on_shared_hosts_have_honest_ground_truth(sb: Sandbox) -> None:
    world = sb.world
    for case, (_, provider) in SHARED_KINDS.items():
        people = [p for p in world.iter_people() if p.truth.case == case]
        assert len(people) > 500, case
        assert {p.truth.provider for p in people} == {provider}
        assert {p.mailbox for p in people} == {"exists", "unknown", "disabled", "full"}
        for person in people[:50]:
            assert person.email is not None
            assert world.truth_for_address(person.email) == person.truth
            assert world.provider_of(person.email) == provider
        domain = str(people[0].email).strip().rpartition("@")[2]
        stranger = f"zq8v0k3x9w2m1t@{domain}"
        truth = world.truth_for_address(stranger)
        assert truth is not None
        assert (truth.status, truth.substatus, truth.provider) == (
            "Invalid",
            "mailbox_not_found",
            provider,
        )


def test_shared_hosts_resolve_through_the_sandbox_dns(sb: Sandbox) -> None:
    host, port = sb.dns_nameserver.rsplit(":", 1)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = int(port)
    resolver.lifetime = 3.0
    world = sb.world
    exchanges: dict[str, set[str]] = {}
    addresses: dict[str, set[str]] = {}
    for name, domain in world.domains.items():
        if domain.kind not in SHARED_KINDS:
            continue
        (mx,) = resolver.resolve(name, "MX")
        exchange = mx.exchange.to_text().rstrip(".")
        (a,) = resolver.resolve(exchange, "A")
        exchanges.setdefault(domain.kind, set()).add(exchange)
        addresses.setdefault(domain.kind, set()).add(a.to_text())
    assert exchanges["shared_workspace"] == {SHARED_WORKSPACE_HOST}
    assert exchanges["shared_hosting"] == {SHARED_HOSTING_HOST}
    # Every Microsoft 365 tenant has an MX name of its own, all on one address (EOP's pool).
    tenants = exchanges["shared_m365"]
    assert len(tenants) == 90
    assert all(t.endswith("-example.mail.protection.outlook.com") for t in tenants)
    for kind, (hostname, _) in SHARED_KINDS.items():
        assert addresses[kind] == {_ip_of(world, hostname)}, kind
    assert world.smtp_hosts[_ip_of(world, SHARED_EOP_HOST)].provider == "microsoft365"


def test_shared_hosts_answer_each_mailbox_honestly(sb: Sandbox) -> None:
    world = sb.world
    for case in SHARED_KINDS:
        for mailbox in ("exists", "unknown", "disabled", "full"):
            address = world.address_for(case, mailbox)
            person = world.person_by_email(address)
            assert person is not None
            with _smtp(sb, _mx_ip(world, address)) as client:
                code, text = client.rcpt(address.strip())
            expected = 552 if mailbox == "full" else _code(person.truth.status)
            assert code == expected, (case, mailbox, text)
            if case == "shared_m365" and mailbox == "unknown":
                assert text.startswith(b"5.4.1 Recipient address rejected: Access denied")


# ---------------------------------------------------------------------- PIPELINING
def test_every_host_advertises_pipelining_and_answers_a_burst_in_order(sb: Sandbox) -> None:
    world = sb.world
    hosting = _ip_of(world, SHARED_HOSTING_HOST)
    exists = world.address_for("shared_hosting", "exists").strip()
    unknown = world.address_for("shared_hosting", "unknown").strip()
    full = world.address_for("shared_hosting", "full").strip()
    disabled = world.address_for("shared_hosting", "disabled").strip()
    with _raw(sb, hosting) as raw:
        raw.send("EHLO verifier.sandbox.example")
        assert "250-PIPELINING" in raw.reply().splitlines()
        rcpts = [exists, unknown, f"info@{exists.rpartition('@')[2]}", full, disabled]
        raw.send(f"MAIL FROM:<{SENDER}>", *(f"RCPT TO:<{r}>" for r in rcpts), "RSET", "NOOP")
        replies = [raw.reply() for _ in range(8)]
        assert replies[0].startswith("250 ")
        assert replies[1].startswith("250 ")
        assert replies[2] == (
            f"550 5.1.1 <{unknown.lower()}>: Recipient address rejected: User unknown in "
            "virtual mailbox table"
        )
        assert replies[3].startswith("250 ")
        assert replies[4].startswith("552 5.2.2 ")
        assert replies[5].startswith("550 5.2.1 ")
        assert replies[6] == replies[7] == "250 OK"  # RSET, NOOP
        raw.send("QUIT")
        assert raw.reply().startswith("221 ")
    assert _wait_until(lambda: SHARED_HOSTING_HOST in sb.obs.rcpt_per_session)
    assert sb.obs.rcpt_per_transaction == {SHARED_HOSTING_HOST: Counter({5: 1})}
    assert sb.obs.rcpt_per_session == {SHARED_HOSTING_HOST: Counter({5: 1})}
    assert sb.obs.rsets == {SHARED_HOSTING_HOST: 1}
    assert sb.obs.peak_rcpt_per_minute == {SHARED_HOSTING_HOST: 5}


def test_google_keeps_refusing_a_second_domain_in_a_pipelined_transaction(sb: Sandbox) -> None:
    world = sb.world
    ws = sorted(n for n, d in world.domains.items() if d.kind == "shared_workspace")[:2]
    with _raw(sb, _ip_of(world, SHARED_WORKSPACE_HOST)) as raw:
        raw.send("EHLO verifier.sandbox.example")
        assert "250-PIPELINING" in raw.reply()
        raw.send(
            f"MAIL FROM:<{SENDER}>",
            f"RCPT TO:<info@{ws[0]}>",
            f"RCPT TO:<sales@{ws[0]}>",
            f"RCPT TO:<info@{ws[1]}>",
            "RSET",
            f"MAIL FROM:<{SENDER}>",
            f"RCPT TO:<info@{ws[1]}>",
        )
        replies = [raw.reply()[:9] for _ in range(7)]
        assert replies == [
            "250 2.1.0",
            "250 2.1.5",
            "250 2.1.5",
            "451 4.3.0",  # a second domain in the transaction
            "250 OK",  # RSET
            "250 2.1.0",
            "250 2.1.5",  # a new transaction for the second domain
        ]
    assert sb.obs.mixed_domain_rejections == {SHARED_WORKSPACE_HOST: 1}


def test_one_session_across_tenants_of_the_shared_eop_host(sb: Sandbox) -> None:
    world = sb.world
    tenants = sorted(n for n, d in world.domains.items() if d.kind == "shared_m365")[:2]
    eop = _ip_of(world, SHARED_EOP_HOST)
    assert {_mx_ip(world, t) for t in tenants} == {eop}
    with _smtp(sb, eop) as client:
        assert client.rcpt(f"info@{tenants[0]}")[0] == 250
        assert client.rcpt(f"zq8v0k3x9w2m1t@{tenants[0]}")[0] == 550
        assert client.rset()[0] == 250
        assert client.mail(SENDER)[0] == 250
        for local in ("info", "sales", "zq8v0k3x9w2m1t"):
            client.rcpt(f"{local}@{tenants[1]}")
    assert _wait_until(lambda: SHARED_EOP_HOST in sb.obs.rcpt_per_session)
    assert sb.obs.rcpt_per_transaction[SHARED_EOP_HOST] == Counter({2: 1, 3: 1})
    assert sb.obs.rcpt_per_session[SHARED_EOP_HOST] == Counter({5: 1})
    assert sb.obs.rsets[SHARED_EOP_HOST] == 1
    assert sb.obs.peak_rcpt_per_minute[SHARED_EOP_HOST] == 5
    snapshot = sb.obs.snapshot()
    assert snapshot["max_rcpt_per_session"] == {SHARED_EOP_HOST: 5}
    assert snapshot["max_rcpt_per_transaction"] == {SHARED_EOP_HOST: 3}
    assert snapshot["rcpt_per_transaction"] == {SHARED_EOP_HOST: {2: 1, 3: 1}}
    assert snapshot["rsets"] == {SHARED_EOP_HOST: 1}
    assert snapshot["peak_rcpt_per_minute"] == {SHARED_EOP_HOST: 5}
    assert snapshot["smtp_rate_limited"] == {}


def test_sessions_and_transactions_without_rcpt_are_not_counted(sb: Sandbox) -> None:
    with _smtp(sb, _ip_of(sb.world, SHARED_HOSTING_HOST)) as client:
        client.rset()
    time.sleep(0.2)
    assert sb.obs.rcpt_per_session == {} and sb.obs.rcpt_per_transaction == {}
    assert sb.obs.rsets == {SHARED_HOSTING_HOST: 1}


# ---------------------------------------------------------------------- per-host options
def _small_world(**changes: dict[str, Any]) -> World:
    """A small shared-host world, with some hosts' options changed (by host name)."""
    world = World(seed=7, people=300, shared_domains=6)
    for ip, host in list(world.smtp_hosts.items()):
        if host.hostname in changes:
            world.smtp_hosts[ip] = dataclasses.replace(host, **changes[host.hostname])
    return world


def test_a_host_may_leave_pipelining_out_and_refuse_rset(make_sandbox: MakeSandbox) -> None:
    world = _small_world(
        **{
            SHARED_EOP_HOST: {"pipelining": False},
            SHARED_HOSTING_HOST: {"refuse_rset": True},
        }
    )
    sb = make_sandbox(world)
    with smtplib.SMTP(_ip_of(world, SHARED_EOP_HOST), sb.smtp_port, timeout=5) as client:
        assert client.ehlo("verifier.sandbox.example")[0] == 250
        assert not client.has_extn("pipelining")
        assert client.has_extn("enhancedstatuscodes")
    with _smtp(sb, _ip_of(world, SHARED_HOSTING_HOST)) as client:
        assert client.has_extn("pipelining")
        domain = next(n for n, d in world.domains.items() if d.kind == "shared_hosting")
        assert client.rcpt(f"info@{domain}")[0] == 250
        assert client.rset() == (502, b"5.5.2 Error: command not recognized")
        assert client.mail(SENDER) == (503, b"Error: nested MAIL command")  # still in it
        assert client.rcpt(f"sales@{domain}")[0] == 250  # the same transaction goes on
    assert _wait_until(lambda: SHARED_HOSTING_HOST in sb.obs.rcpt_per_transaction)
    assert sb.obs.rcpt_per_transaction[SHARED_HOSTING_HOST] == Counter({2: 1})
    assert sb.obs.rsets[SHARED_HOSTING_HOST] == 1


# ---------------------------------------------------------------------- rate limits
def test_google_rate_limits_a_client_with_421_and_closes(make_sandbox: MakeSandbox) -> None:
    world = _small_world(**{SHARED_WORKSPACE_HOST: {"max_rcpt_per_minute": 3}})
    sb = make_sandbox(world)
    aspmx = _ip_of(world, SHARED_WORKSPACE_HOST)
    domain = next(n for n, d in world.domains.items() if d.kind == "shared_workspace")
    with _smtp(sb, aspmx) as client:
        for local in ("info", "sales", "zq8v0k3x9w2m1t"):
            assert client.rcpt(f"{local}@{domain}")[0] in (250, 550)
        code, text = client.rcpt(f"support@{domain}")
        assert f"{code} {text.decode()}" == GOOGLE_RATE
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()  # 421: the server closed the connection
    with _smtp(sb, aspmx) as client:  # the budget is per client and per minute, not per session
        assert client.rcpt(f"info@{domain}")[0] == 421
    with _smtp(sb, aspmx, source="127.0.0.2") as client:  # another client has its own
        assert client.rcpt(f"info@{domain}")[0] == 250
    assert sb.obs.smtp_rate_limited == {SHARED_WORKSPACE_HOST: 2}
    assert sb.obs.peak_rcpt_per_minute[SHARED_WORKSPACE_HOST] == 6  # every RCPT received
    # A shorter window (a switch) lets the client in again once it has passed.
    sb.obs.faults.rcpt_rate_window_seconds = 0.3
    time.sleep(0.35)
    with _smtp(sb, aspmx) as client:
        assert client.rcpt(f"info@{domain}")[0] == 250


def test_a_421_in_a_pipelined_burst_ends_the_session(make_sandbox: MakeSandbox) -> None:
    world = _small_world(**{SHARED_WORKSPACE_HOST: {"max_rcpt_per_minute": 2}})
    sb = make_sandbox(world)
    domain = next(n for n, d in world.domains.items() if d.kind == "shared_workspace")
    with _raw(sb, _ip_of(world, SHARED_WORKSPACE_HOST)) as raw:
        raw.send("EHLO verifier.sandbox.example")
        raw.reply()
        locals_ = ("info", "sales", "support", "billing", "admin")
        raw.send(f"MAIL FROM:<{SENDER}>", *(f"RCPT TO:<{loc}@{domain}>" for loc in locals_))
        replies = [raw.reply() for _ in range(4)]
        assert [r[:3] for r in replies] == ["250", "250", "250", "421"]
        assert replies[3] == GOOGLE_RATE
        assert raw.ended()  # no reply to the RCPTs after the 421
    assert _wait_until(lambda: SHARED_WORKSPACE_HOST in sb.obs.rcpt_per_session)
    assert sb.obs.rcpt_per_session[SHARED_WORKSPACE_HOST] == Counter({3: 1})
    assert sb.obs.smtp_rate_limited[SHARED_WORKSPACE_HOST] == 1


def test_the_switch_rate_limits_every_host_in_its_providers_words(sb: Sandbox) -> None:
    sb.obs.faults.max_rcpt_per_minute = 2
    world = sb.world
    tenant = next(n for n, d in world.domains.items() if d.kind == "shared_m365")
    with _smtp(sb, _ip_of(world, SHARED_EOP_HOST)) as client:
        assert client.rcpt(f"info@{tenant}")[0] == 250
        assert client.rcpt(f"sales@{tenant}")[0] == 250
        busy = (
            f"4.7.500 Server busy. Please try again later from [127.0.0.1]. (S77714) "
            f"[{SHARED_EOP_HOST}]"
        )
        assert client.rcpt(f"support@{tenant}") == (451, busy.encode())
        assert client.noop()[0] == 250  # a 451 leaves the connection open
        assert client.rcpt(f"billing@{tenant}")[0] == 451
    hosted = next(n for n, d in world.domains.items() if d.kind == "shared_hosting")
    with _smtp(sb, _ip_of(world, SHARED_HOSTING_HOST)) as client:
        client.rcpt(f"info@{hosted}")
        client.rcpt(f"sales@{hosted}")
        assert client.rcpt(f"support@{hosted}") == (421, b"4.7.0 Too many messages, slow down")
    with _smtp(sb, _ip_of(world, "gmail-smtp-in.l.google.com")) as client:
        client.rcpt("info@gmail.com")
        client.rcpt("sales@gmail.com")
        assert client.rcpt("support@gmail.com")[0] == 421
    assert sb.obs.smtp_rate_limited == {
        SHARED_EOP_HOST: 2,
        SHARED_HOSTING_HOST: 1,
        "gmail-smtp-in.l.google.com": 1,
    }
    assert sb.obs.peak_rcpt_per_minute[SHARED_EOP_HOST] == 4
    assert sb.obs.snapshot()["smtp_rate_limited"][SHARED_EOP_HOST] == 2
    sb.obs.reset_counters()  # the budgets go with the counters
    with _smtp(sb, _ip_of(world, SHARED_EOP_HOST)) as client:
        assert client.rcpt(f"info@{tenant}")[0] == 250


def test_peak_rcpt_per_minute_is_a_sliding_window() -> None:
    from cio_sandbox import Observatory

    obs = Observatory()
    obs.PEAK_WINDOW_SECONDS = 0.2
    for _ in range(3):
        obs.count_host_rcpt("mx.example")
    time.sleep(0.25)
    for _ in range(2):
        obs.count_host_rcpt("mx.example")
    assert obs.peak_rcpt_per_minute["mx.example"] == 3
    assert len(obs._rcpt_times["mx.example"]) == 2  # old ones dropped: memory stays bounded
    assert obs.take_rcpt_budget("127.0.1.1", "127.0.0.1", 1, 0.1)
    assert not obs.take_rcpt_budget("127.0.1.1", "127.0.0.1", 1, 0.1)
    assert obs.take_rcpt_budget("127.0.1.1", "127.0.0.2", 1, 0.1)
    time.sleep(0.12)
    assert obs.take_rcpt_budget("127.0.1.1", "127.0.0.1", 1, 0.1)
