"""Hostile sign-ups and mail servers (issue 16): none may switch verification off, exhaust the run,
reach inside the network or earn a verdict.

The servers are the sandbox's hostile set (`cio_sandbox.hostile_smtp`), on loopback; their DNS is
published in the session sandbox's zone under names unique to each test. No test sends a packet
off the machine: connects to anything but loopback are refused by `no_packets_off_loopback` before
a socket exists, and recorded, so a test can show that the probe never tried.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cio_sandbox import Sandbox
from cio_sandbox.hostile_smtp import add_hostile_zone, start_hostile_fleet, start_hostile_smtp
from mapper_emailverify import Status, SubStatus, Verifier, VerifierConfig
from mapper_emailverify.engine.errors import ConfigError
from mapper_emailverify.engine.result import Result

FAST = {"smtp_timeout": 0.5, "smtp_session_linger": 0, "dns_timeout": 2.0}


@pytest.fixture
def dials(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every address the SMTP client asks the OS to connect to; anything off loopback is refused
    here, before a socket exists (so a regression cannot send a packet off the machine)."""
    seen: list[str] = []
    real = asyncio.open_connection

    async def guarded(host: Any = None, port: Any = None, **kwargs: Any) -> Any:
        if host is not None:
            seen.append(str(host))
            if not ipaddress.ip_address(str(host)).is_loopback:
                raise OSError(101, "refused by the test: not loopback")
        return await real(host, port, **kwargs)

    monkeypatch.setattr(asyncio, "open_connection", guarded)
    yield seen


def verify_all(config: dict[str, Any], addresses: list[str]) -> list[Result]:
    async def go() -> list[Result]:
        async with Verifier(config) as verifier:
            return await verifier.verify_many(addresses)

    return asyncio.run(go())


def pair(result: Result) -> tuple[str, str]:
    return str(result.status), str(result.substatus)


# -- 1. three sign-ups cannot turn verification off -------------------------------------------


def test_multicast_mx_signups_do_not_switch_smtp_off(sandbox: Sandbox) -> None:
    world = sandbox.world
    for name, ip in (("mc4", "224.0.0.1"), ("bcast", "255.255.255.255"), ("mc6", "ff02::1")):
        add_hostile_zone(world, f"{name}.flip.example", mx=[f"mx.{name}.flip.example"])
        add_hostile_zone(world, f"{name}.flip.example", hosts={f"mx.{name}.flip.example": [ip]})
    hostile = [f"x@{name}.flip.example" for name in ("mc4", "bcast", "mc6")]
    ordinary = [p.email for p in world.iter_people() if p.truth.case == "normal" and p.email][:300]

    async def go() -> list[Result]:
        async with Verifier(sandbox.mapper_config(smtp_timeout=2.0)) as verifier:
            first = await verifier.verify_many(hostile)  # the sign-ups come first in the run
            return [*first, *await verifier.verify_many(ordinary)]

    results = asyncio.run(go())
    unavailable = [r for r in results[3:] if r.substatus is SubStatus.SMTP_UNAVAILABLE]
    assert unavailable == [], f"{len(unavailable)} of {len(ordinary)} ordinary addresses"
    assert {pair(r) for r in results[:3]} == {("Unknown", "mx_not_public")}
    assert sum(r.status is Status.VALID for r in results[3:]) > 0.5 * len(ordinary)


def test_port25_watch_needs_independent_failures_and_an_active_check() -> None:
    from mapper_emailverify.engine.smtp.port25_watch import Port25Watch

    async def go(path_works: bool, others: list[str]) -> tuple[Port25Watch, list[str]]:
        dialled: list[str] = []

        async def dial(ip: str) -> bool:
            dialled.append(ip)
            return path_works

        watch = Port25Watch(3, dial=dial, candidates=lambda networks, domains: others)
        for i in range(10):  # one domain, ten addresses: one piece of evidence
            watch.unreachable(f"93.184.216.{i}", "attacker.example")
        for i in range(2):  # two more domains, but the same /24
            watch.unreachable(f"93.184.216.{50 + i}", f"attacker{i}.example")
        assert watch.evidence == 1 and not await watch.settle(0.05)
        for i in range(3):  # three domains in three networks: now an active check
            watch.unreachable(f"45.33.{i}.7", f"other{i}.example")
        await watch.settle(1.0)
        return watch, dialled

    watch, dialled = asyncio.run(go(True, ["192.0.2.1", "192.0.2.2"]))
    assert dialled == ["192.0.2.1", "192.0.2.2"] and watch.alive and not watch.unavailable
    watch, dialled = asyncio.run(go(False, ["192.0.2.1"]))
    assert dialled == ["192.0.2.1"] and watch.unavailable


# -- 2. a deadline per address, and capped hosts and addresses ----------------------------------


def test_thirty_silent_mx_hosts_cost_a_few_connections(sandbox: Sandbox) -> None:
    async def go() -> tuple[Result, int]:
        async with await start_hostile_smtp("silent", host="127.0.0.1") as server:
            mx = [f"mx{i}.thirty.example" for i in range(30)]
            add_hostile_zone(
                sandbox.world, "thirty.example", mx=mx, hosts={m: ["127.0.0.1"] for m in mx}
            )
            config = sandbox.mapper_config(**FAST, smtp_port=server.port)
            async with Verifier(config) as verifier:
                result = await verifier.verify("someone@thirty.example")
            return result, server.connections

    result, connections = asyncio.run(go())
    assert result.status is Status.UNKNOWN and result.substatus is SubStatus.SMTP_TIMEOUT
    assert connections <= 5, connections


def test_a_hundred_addresses_of_one_host_are_not_all_dialled(sandbox: Sandbox) -> None:
    ips = [f"127.0.77.{i}" for i in range(1, 101)]

    async def go() -> tuple[Result, int]:
        fleet = await start_hostile_fleet(dict.fromkeys(ips, "drop_after_banner"))
        try:
            add_hostile_zone(sandbox.world, "hundred.example", a=ips)  # implicit MX
            port = next(iter(fleet.values())).port
            async with Verifier(sandbox.mapper_config(**FAST, smtp_port=port)) as verifier:
                result = await verifier.verify("someone@hundred.example")
        finally:
            for server in fleet.values():
                await server.close()
        return result, sum(server.connections for server in fleet.values())

    result, connections = asyncio.run(go())
    assert result.status is Status.UNKNOWN
    assert connections <= 5, connections


def test_a_server_answering_just_under_the_timeout_meets_the_deadline(sandbox: Sandbox) -> None:
    async def go() -> tuple[Result, float]:
        async with await start_hostile_smtp("just_under", delay=0.4) as server:
            add_hostile_zone(sandbox.world, "slowpoke.example", a=["127.0.0.1"])
            config = sandbox.mapper_config(**FAST, smtp_port=server.port)
            async with Verifier(config) as verifier:
                started = time.monotonic()
                result = await verifier.verify("someone@slowpoke.example")
                return result, time.monotonic() - started

    result, took = asyncio.run(go())
    assert pair(result) == ("Unknown", "smtp_timeout"), result.evidence.decided_by
    assert "verification_deadline" in result.evidence.decided_by
    assert VerifierConfig.from_settings(FAST).deadline == 1.5  # 3 * smtp_timeout by default
    assert took < 1.5 + 1.0, took  # the deadline plus scheduling, not six timeouts


def test_tarpits_do_not_hold_every_concurrency_slot(sandbox: Sandbox) -> None:
    """With every slot taken by silent servers, ordinary addresses still finish before them."""
    world = sandbox.world
    ordinary = [p.email for p in world.iter_people() if p.truth.case == "normal" and p.email]
    ordinary = ordinary[300:320]
    tarpits = [f"x@tarpit{i}.slots.example" for i in range(4)]

    async def go() -> tuple[float, float, list[Result]]:
        # On the sandbox's SMTP port, at an address of its own: one verifier reaches both.
        async with await start_hostile_smtp(
            "silent", host="127.0.88.1", port=sandbox.smtp_port
        ) as server:
            for i in range(4):
                add_hostile_zone(world, f"tarpit{i}.slots.example", a=[server.host])
            config = sandbox.mapper_config(smtp_timeout=2.0, smtp_session_linger=0, concurrency=4)
            async with Verifier(config) as verifier:
                slow_done: list[float] = []
                slow = [asyncio.create_task(verifier.verify(t)) for t in tarpits]
                for task in slow:
                    task.add_done_callback(lambda _: slow_done.append(time.monotonic()))
                await asyncio.sleep(0.05)  # the tarpits hold the four slots first
                await asyncio.gather(*(verifier.verify(a) for a in ordinary))
                fast_done = time.monotonic()
                results = await asyncio.gather(*slow)
                return fast_done, min(slow_done), results

    fast_done, first_tarpit_done, results = asyncio.run(go())
    assert all(r.status is Status.UNKNOWN for r in results)
    assert fast_done < first_tarpit_done, "ordinary addresses waited for the tarpits' slots"


# -- 3. endless replies are capped ---------------------------------------------------------------


@pytest.mark.parametrize("behaviour", ["endless_ehlo", "huge_line", "many_lines"])
def test_endless_or_huge_replies_are_cut_short(sandbox: Sandbox, behaviour: str) -> None:
    domain = f"{behaviour.replace('_', '-')}.endless.example"

    async def go() -> tuple[Result, int]:
        async with await start_hostile_smtp(behaviour) as server:
            add_hostile_zone(sandbox.world, domain, a=["127.0.0.1"])
            config = sandbox.mapper_config(**FAST, smtp_port=server.port)
            async with Verifier(config) as verifier:
                result = await verifier.verify(f"someone@{domain}")
            return result, server.bytes_sent

    result, sent = asyncio.run(go())
    assert result.status is Status.UNKNOWN, pair(result)
    # What the client read is capped at 64 KiB a reply; the rest is socket buffers.
    assert sent < 8 * 2**20, f"{sent / 2**20:.0f} MiB sent to the client"
    print(f"{behaviour}: {sent / 2**20:.2f} MiB sent")


# -- 4. only global unicast addresses are dialled by default ------------------------------------

PRIVATE_OR_WORSE = [
    "127.0.0.1",
    "::1",
    "0.0.0.0",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "fc00::1",
    "::ffff:10.0.0.1",
    "224.0.0.1",
    "255.255.255.255",
    "ff02::1",
]


def _zone_for(sandbox: Sandbox, ips: list[str], tag: str) -> list[str]:
    addresses = []
    for n, ip in enumerate(ips):
        mx_domain, implicit_domain = f"mx{n}.{tag}.example", f"a{n}.{tag}.example"
        add_hostile_zone(sandbox.world, mx_domain, mx=[f"mail.{mx_domain}"])
        add_hostile_zone(sandbox.world, mx_domain, hosts={f"mail.{mx_domain}": [ip]})
        add_hostile_zone(sandbox.world, implicit_domain, hosts={implicit_domain: [ip]})
        addresses += [f"someone@{mx_domain}", f"someone@{implicit_domain}"]
    return addresses


def test_non_public_mail_hosts_are_not_contacted(sandbox: Sandbox, dials: list[str]) -> None:
    async def go() -> list[Result]:
        async with await start_hostile_smtp("echo", host="127.0.0.1") as server:
            addresses = _zone_for(sandbox, PRIVATE_OR_WORSE, "private")
            config = {**sandbox.mapper_config(**FAST, smtp_port=server.port)}
            del config["allow_private_mx"]  # the default: production
            async with Verifier(config) as verifier:
                results = await verifier.verify_many(addresses)
            assert server.connections == 0
            return results

    results = asyncio.run(go())
    assert {pair(r) for r in results} == {("Unknown", "mx_not_public")}
    assert dials == []
    assert "not contacted" in results[0].evidence.decided_by


def test_allow_private_mx_opens_loopback_and_private_never_multicast(
    sandbox: Sandbox, dials: list[str]
) -> None:
    never = ["0.0.0.0", "224.0.0.1", "255.255.255.255", "ff02::1", "::"]

    async def go() -> tuple[list[Result], list[Result]]:
        async with await start_hostile_smtp("echo", host="127.0.0.1") as server:
            config = sandbox.mapper_config(**FAST, smtp_port=server.port)  # allow_private_mx on
            async with Verifier(config) as verifier:
                opened = await verifier.verify_many(_zone_for(sandbox, ["127.0.0.1"], "opted"))
                closed = await verifier.verify_many(_zone_for(sandbox, never, "never"))
            return opened, closed

    opened, closed = asyncio.run(go())
    assert {r.status for r in opened} == {Status.CATCH_ALL}  # the echo server accepts anything
    assert {pair(r) for r in closed} == {("Unknown", "mx_not_public")}
    assert set(dials) == {"127.0.0.1"}
    from mapper_emailverify.engine.address_policy import may_contact

    assert may_contact("10.0.0.1", allow_private=True)  # decided, never dialled in a test
    assert not may_contact("10.0.0.1", allow_private=False)


def test_the_socks_proxy_is_never_asked_for_a_private_host(
    sandbox: Sandbox, dials: list[str]
) -> None:
    async def go() -> tuple[list[Result], int]:
        async with await start_hostile_smtp("silent", host="127.0.0.1") as proxy:
            addresses = _zone_for(sandbox, ["10.0.0.1", "169.254.169.254"], "socks")
            config = {
                **sandbox.mapper_config(**FAST),
                "socks_proxy": f"socks5://{proxy.host}:{proxy.port}",
            }
            del config["allow_private_mx"]
            async with Verifier(config) as verifier:
                results = await verifier.verify_many(addresses)
            return results, proxy.connections

    results, proxy_connections = asyncio.run(go())
    assert {pair(r) for r in results} == {("Unknown", "mx_not_public")}
    assert proxy_connections == 0 and dials == []


# -- 9. reply codes outside RFC 5321 are protocol errors ----------------------------------------

ODD_REPLIES = [
    "600 odd",
    "999 what",
    "354 go ahead",
    "299 ok",
    "25 short",
    "2x0 bad",
    "550-first\r\n451 second",
    "250-first\r\n550 second",
]


@pytest.mark.parametrize("reply", ODD_REPLIES)
def test_malformed_rcpt_replies_give_no_verdict(sandbox: Sandbox, reply: str) -> None:
    domain = f"odd{ODD_REPLIES.index(reply)}.codes.example"

    async def go() -> Result:
        async with await start_hostile_smtp("rcpt_code", reply=reply) as server:
            add_hostile_zone(sandbox.world, domain, a=["127.0.0.1"])
            config = sandbox.mapper_config(**FAST, smtp_port=server.port)
            async with Verifier(config) as verifier:
                return await verifier.verify(f"someone@{domain}")

    result = asyncio.run(go())
    assert result.status is Status.UNKNOWN, (pair(result), result.evidence.decided_by)


# -- 10. settings cannot inject SMTP commands ---------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("helo_hostname", "verifier.example\r\nRCPT TO:<x@y.example>"),
        ("mail_from", "probe@verifier.example\nRSET"),
        ("helo_hostname", "verifier.example\x00"),
        ("mail_from", "probe@verifier.example>"),
    ],
)
def test_command_injection_in_settings_is_refused(setting: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        VerifierConfig.from_settings({setting: value})
    message = str(caught.value)
    assert setting in message and "\n" not in message and value not in message


def test_the_session_never_sends_a_line_break(sandbox: Sandbox) -> None:
    from mapper_emailverify.engine.smtp.session import SmtpFailure, SmtpSession, Timeouts

    async def go() -> list[bytes]:
        async with await start_hostile_smtp("echo") as server:
            session = SmtpSession(
                "mx", server.host, server.port, Timeouts(1, 1, 1), allow_private=True
            )
            await session.connect()
            await session.hello("verifier.example")
            with pytest.raises(SmtpFailure):
                await session.command("MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>")
            await session.quit()
            await asyncio.sleep(0.05)
            return list(server.commands)

    commands = asyncio.run(go())
    assert not any(line.startswith((b"MAIL", b"RCPT")) for line in commands), commands


# -- memory per distinct domain is bounded --------------------------------------------------------


def test_memory_per_domain_is_bounded(sandbox: Sandbox) -> None:
    from mapper_emailverify.engine.dns_lookup import DomainRoute, MailHost
    from mapper_emailverify.engine.smtp.prober import SmtpProber

    async def go() -> tuple[int, int]:
        config = VerifierConfig.from_settings(
            {**FAST, "smtp_port": 9, "allow_private_mx": True, "result_memory": 0}
        )
        prober = SmtpProber(config)
        try:
            for start in range(0, 2500, 250):  # nothing listens on port 9: refused at once
                await asyncio.gather(
                    *(
                        prober.probe(
                            DomainRoute(
                                f"d{i}.many.example",
                                None,
                                (MailHost("mx", 10, (f"127.1.{i // 250}.{i % 250 + 1}",)),),
                            ),
                            f"x@d{i}.many.example",
                        )
                        for i in range(start, start + 250)
                    )
                )
            return len(prober._domains), len(prober._host_slots)
        finally:
            await prober.aclose()

    domains, slots = asyncio.run(go())
    assert domains <= 1000 and slots <= 1000, (domains, slots)
