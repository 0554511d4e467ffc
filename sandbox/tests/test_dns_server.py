"""The sandbox DNS server answers like an authoritative server for the world, over UDP and TCP."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import pytest
from cio_sandbox import Sandbox, World
from cio_sandbox.world import DNS_TTL, SLOW_DNS_SECONDS

MakeSandbox = Callable[..., Sandbox]


def _server(sb: Sandbox) -> tuple[str, int]:
    host, port = sb.dns_nameserver.rsplit(":", 1)
    return host, int(port)


def _resolver(sb: Sandbox) -> dns.resolver.Resolver:
    host, port = _server(sb)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = port
    resolver.lifetime = 3.0
    return resolver


def _ask(
    sb: Sandbox, name: str, rdtype: str, *, tcp: bool = False, timeout: float = 3.0
) -> dns.message.Message:
    host, port = _server(sb)
    query = dns.message.make_query(name, rdtype)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, host, port=port, timeout=timeout)


def _soa_owner(response: dns.message.Message) -> str:
    (soa,) = response.authority
    assert soa.rdtype == dns.rdatatype.SOA
    assert soa.ttl == DNS_TTL
    return soa.name.to_text()


def test_mx_records_are_authoritative_in_preference_order(sandbox: Sandbox) -> None:
    answer = _resolver(sandbox).resolve("dead-first-mx-0.example", "MX")
    assert answer.response.flags & dns.flags.AA
    assert answer.rrset is not None and answer.rrset.ttl == DNS_TTL
    by_preference = sorted((r.preference, r.exchange.to_text()) for r in answer)
    assert by_preference == [
        (10, "mx1.dead-first-mx-0.example."),
        (20, "mx2.dead-first-mx-0.example."),
    ]
    # The first MX points at an address nobody listens on; the second at a live mail host.
    first = _resolver(sandbox).resolve("mx1.dead-first-mx-0.example", "A")[0].address
    second = _resolver(sandbox).resolve("mx2.dead-first-mx-0.example", "A")[0].address
    assert first in sandbox.world.dead_ips
    assert second in sandbox.world.smtp_hosts


def test_provider_mx_and_its_host(sandbox: Sandbox) -> None:
    resolver = _resolver(sandbox)
    (mx,) = resolver.resolve("gmail.com", "MX")
    assert (mx.preference, mx.exchange.to_text()) == (5, "gmail-smtp-in.l.google.com.")
    (a,) = resolver.resolve(mx.exchange, "A")
    assert sandbox.world.smtp_hosts[a.address].hostname == "gmail-smtp-in.l.google.com"


def test_null_mx(sandbox: Sandbox) -> None:
    (mx,) = _resolver(sandbox).resolve("null-mx-0.example", "MX")
    assert (mx.preference, mx.exchange.to_text()) == (0, ".")


def test_domain_with_a_record_only(sandbox: Sandbox) -> None:
    response = _ask(sandbox, "no-mx-a-0.example", "MX")
    assert response.rcode() == dns.rcode.NOERROR
    assert not response.answer
    assert _soa_owner(response) == "no-mx-a-0.example."
    (a,) = _resolver(sandbox).resolve("no-mx-a-0.example", "A")
    assert a.address in sandbox.world.smtp_hosts


def test_no_mail_domain_answers_nodata_with_soa(sandbox: Sandbox) -> None:
    for rdtype in ("MX", "A", "AAAA"):
        response = _ask(sandbox, "no-mail-0.example", rdtype)
        assert response.rcode() == dns.rcode.NOERROR, rdtype
        assert response.flags & dns.flags.AA
        assert not response.answer
        assert _soa_owner(response) == "no-mail-0.example."
    with pytest.raises(dns.resolver.NoAnswer):
        _resolver(sandbox).resolve("no-mail-0.example", "MX")
    (txt,) = _resolver(sandbox).resolve("no-mail-0.example", "TXT")
    assert txt.strings == (b"v=spf1 -all",)


def test_unknown_names_are_nxdomain_with_soa(sandbox: Sandbox) -> None:
    for name in ("expired-startup-0.example", "gmial.com", "mx9.gmail.com", "nothing.invalid"):
        response = _ask(sandbox, name, "MX")
        assert response.rcode() == dns.rcode.NXDOMAIN, name
        assert response.flags & dns.flags.AA
        _soa_owner(response)
    with pytest.raises(dns.resolver.NXDOMAIN):
        _resolver(sandbox).resolve("gmial.com", "MX")


def test_empty_non_terminals_exist(sandbox: Sandbox) -> None:
    for name in ("l.google.com", "google.com", "protection.outlook.com"):
        response = _ask(sandbox, name, "A")
        assert response.rcode() == dns.rcode.NOERROR, name
        assert not response.answer


def test_each_world_domain_is_a_zone_apex_with_an_soa(sandbox: Sandbox) -> None:
    (soa,) = _resolver(sandbox).resolve("null-mx-0.example", "SOA")
    assert soa.minimum == DNS_TTL
    assert _soa_owner(_ask(sandbox, "mx1.null-mx-0.example", "A")) == "null-mx-0.example."
    with pytest.raises(dns.resolver.NoAnswer):
        _resolver(sandbox).resolve("gmail-smtp-in.l.google.com", "SOA")  # not an apex


def test_servfail_for_broken_zone_and_names_under_it(sandbox: Sandbox) -> None:
    for name in ("broken-dns-0.example", "mx1.broken-dns-0.example"):
        response = _ask(sandbox, name, "MX")
        assert response.rcode() == dns.rcode.SERVFAIL, name
        assert not response.answer
    with pytest.raises(dns.resolver.NoNameservers):
        _resolver(sandbox).resolve("broken-dns-1.example", "MX")


def test_names_are_case_insensitive_and_echoed(sandbox: Sandbox) -> None:
    response = _ask(sandbox, "GMail.COM", "MX")
    assert response.rcode() == dns.rcode.NOERROR
    (rrset,) = response.answer
    # 0x20-randomising resolvers need their own case back; name compression may reuse it.
    assert rrset.name.to_text() == "GMail.COM."
    assert rrset[0].exchange.to_text().lower() == "gmail-smtp-in.l.google.com."


def test_idn_domain_is_served_in_punycode(sandbox: Sandbox) -> None:
    name = "bücher-0.example".encode("idna").decode()
    (mx,) = _resolver(sandbox).resolve(name, "MX")
    assert mx.exchange.to_text() == f"mx1.{name}."


def test_slow_zone_answers_late_without_blocking_others(sandbox: Sandbox) -> None:
    host, port = _server(sandbox)

    async def timed(name: str) -> float:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers, resolver.port = [host], port
        start = time.monotonic()
        await resolver.resolve(name, "MX", lifetime=5)
        return time.monotonic() - start

    async def both() -> tuple[float, bool]:
        slow = asyncio.create_task(timed("slow-dns-0.example"))
        await asyncio.sleep(0.05)  # the slow query is in flight before the fast one is sent
        await timed("gmail.com")
        overtaken = not slow.done()  # a server that blocked on the slow zone answers in order
        return await slow, overtaken

    slow, overtaken = asyncio.run(both())
    assert slow >= SLOW_DNS_SECONDS * 0.75
    assert overtaken
    # Names inside the slow zone (its MX host) are slow too.
    start = time.monotonic()
    _resolver(sandbox).resolve("mx1.slow-dns-0.example", "A")
    assert time.monotonic() - start >= SLOW_DNS_SECONDS * 0.75


def test_latency_fault_delays_every_answer(sandbox_faults_reset: Sandbox) -> None:
    sb = sandbox_faults_reset
    sb.obs.faults.dns_latency = 0.3
    start = time.monotonic()
    _resolver(sb).resolve("gmail.com", "MX")
    assert time.monotonic() - start >= 0.25


def test_tcp_queries_and_connection_reuse(sandbox: Sandbox) -> None:
    response = _ask(sandbox, "gmail.com", "MX", tcp=True)
    assert response.flags & dns.flags.AA
    assert response.answer[0][0].exchange.to_text() == "gmail-smtp-in.l.google.com."
    host, port = _server(sandbox)
    with socket.create_connection((host, port), timeout=3) as sock:
        for name in ("null-mx-0.example", "gmial.com"):  # two queries on one connection (RFC 7766)
            reply = dns.query.tcp(
                dns.message.make_query(name, "MX"), host, port=port, sock=sock, timeout=3
            )
            assert reply.question[0].name.to_text() == f"{name}."


def test_large_answer_truncates_over_udp_and_completes_over_tcp(make_sandbox: MakeSandbox) -> None:
    world = World(seed=11, people=50)
    world.zone["big.example"] = {"TXT": [f'"record {k} {"x" * 60}"' for k in range(20)]}
    sb = make_sandbox(world)
    udp = _ask(sb, "big.example", "TXT")
    assert udp.flags & dns.flags.TC
    assert not udp.answer
    tcp = _ask(sb, "big.example", "TXT", tcp=True)
    assert len(tcp.answer[0]) == 20
    answer = _resolver(sb).resolve("big.example", "TXT")  # the resolver retries over TCP on TC
    assert len(answer) == 20


def test_garbage_is_ignored_and_the_server_keeps_answering(sandbox: Sandbox) -> None:
    host, port = _server(sandbox)
    response_packet = dns.message.make_response(dns.message.make_query("gmail.com", "MX")).to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.15)
        for junk in (b"", b"\x00", b"\xff" * 40, b"hello, world", response_packet):
            sock.sendto(junk, (host, port))
            with pytest.raises(TimeoutError):
                sock.recvfrom(4096)
    with socket.create_connection((host, port), timeout=3) as sock:
        sock.sendall(b"\x00\x05junk!")  # a framed TCP message that is not DNS
    notify = dns.message.make_query("gmail.com", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    assert dns.query.udp(notify, host, port=port, timeout=3).rcode() == dns.rcode.NOTIMP
    assert _ask(sandbox, "gmail.com", "MX").rcode() == dns.rcode.NOERROR


def test_every_query_is_counted(sandbox_faults_reset: Sandbox) -> None:
    sb = sandbox_faults_reset
    resolver = _resolver(sb)
    resolver.resolve("Gmail.com", "MX")
    resolver.resolve("gmail.com", "MX")
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve("gmial.com", "A")
    _ask(sb, "broken-dns-0.example", "MX")
    assert sb.obs.dns_queries[("gmail.com", "MX")] == 2
    assert sb.obs.dns_queries[("gmial.com", "A")] == 1
    assert sb.obs.dns_queries[("broken-dns-0.example", "MX")] == 1
