"""Sessions that serve many recipients: pipelined RCPTs, one session shared by the domains of one
mail host, and what happens when a server does not play along (replies out of step, RSET refused,
a connection dropped mid-transaction). Never a reply paired with the wrong recipient.

Hostile servers are `cio_sandbox.hostile_smtp` (they accept every recipient); the domains are named
`googlemail.com`-like so that no catch-all probe hides the recipients' own RCPTs (Gmail's rule).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from cio_sandbox import Sandbox, World
from cio_sandbox.hostile_smtp import add_hostile_zone, start_hostile_smtp
from cio_sandbox.world import PROVIDER_CASE_WEIGHTS
from mapper_emailverify import Verifier
from mapper_emailverify.engine.result import Result
from mapper_emailverify.engine.smtp import prober as prober_module

FAST = {"smtp_timeout": 0.6, "smtp_session_linger": 0.05, "dns_timeout": 2.0}
#: Gmail's rule: no catch-all probe, so every RCPT the server sees is a real recipient's.
DOMAIN = "googlemail.com"


def pair(result: Result) -> tuple[str, str]:
    return str(result.status), str(result.substatus)


def verify_all(config: dict[str, Any], addresses: list[str]) -> tuple[list[Result], Counter[str]]:
    async def go() -> tuple[list[Result], Counter[str]]:
        async with Verifier(config) as verifier:
            results = await verifier.verify_many(addresses)
            return results, Counter(verifier.counters)

    return asyncio.run(go())


def rcpt_lines(commands: list[bytes]) -> list[str]:
    return [line.decode().strip() for line in commands if line.upper().startswith(b"RCPT")]


async def _against(
    sb: Sandbox, behaviour: str, addresses: list[str], **params: Any
) -> tuple[list[Result], Counter[str], list[bytes], int]:
    async with await start_hostile_smtp(behaviour, **params) as server:
        add_hostile_zone(sb.world, DOMAIN, a=[server.host])
        config = sb.mapper_config(**FAST, smtp_port=server.port)
        async with Verifier(config) as verifier:
            results = await verifier.verify_many(addresses)
            counters = Counter(verifier.counters)
        return results, counters, list(server.commands), server.connections


ADDRESSES = [f"person{i}@{DOMAIN}" for i in range(6)]


def test_rcpts_are_pipelined_when_offered(sandbox: Sandbox) -> None:
    results, counters, commands, connections = asyncio.run(
        _against(sandbox, "rset_refused", ADDRESSES)  # offers PIPELINING, otherwise plain
    )
    assert [pair(r) for r in results] == [("Valid", "mailbox_exists")] * len(ADDRESSES)
    assert sorted(rcpt_lines(commands)) == sorted(f"RCPT TO:<{a}>" for a in ADDRESSES)
    assert connections <= 3 and not counters["pipelining_out_of_step"]  # max_connections_per_mx
    assert counters["rcpts_pipelined"] >= 2


@pytest.mark.parametrize("behaviour", ["pipelining_fewer", "pipelining_more"])
def test_replies_out_of_step_are_never_paired(sandbox: Sandbox, behaviour: str) -> None:
    results, counters, commands, _ = asyncio.run(_against(sandbox, behaviour, ADDRESSES))
    assert counters["pipelining_out_of_step"] == 1  # one host, counted once
    # Nothing the out-of-step batch said decided a verdict: its recipients were asked again (some
    # at least twice), and every verdict is the server's real answer (it accepts everyone) or an
    # Unknown, never Invalid.
    asked = Counter(rcpt_lines(commands))
    assert max(asked.values()) >= 2, asked
    for result in results:
        assert pair(result) in {
            ("Valid", "mailbox_exists"),
            ("Unknown", "smtp_connection_failed"),
            ("Unknown", "smtp_timeout"),
        }, result.evidence.decided_by


def test_a_server_without_pipelining_gets_one_command_at_a_time(sandbox: Sandbox) -> None:
    results, counters, commands, _ = asyncio.run(_against(sandbox, "pipelining_strict", ADDRESSES))
    assert [pair(r) for r in results] == [("Valid", "mailbox_exists")] * len(ADDRESSES)
    assert not any(b"pipelining not allowed" in line for line in commands)
    assert not counters["pipelining_out_of_step"]


def test_a_dropped_connection_mid_transaction_is_retried(sandbox: Sandbox) -> None:
    results, _, _commands, connections = asyncio.run(
        _against(sandbox, "drop_mid_transaction", ADDRESSES, after=2, pipelining=False)
    )
    # Every recipient got its own reply or an Unknown; the dropped ones were asked again.
    assert connections >= 2
    for result in results:
        assert pair(result) in {("Valid", "mailbox_exists"), ("Unknown", "smtp_connection_failed")}
    assert sum(pair(r) == ("Valid", "mailbox_exists") for r in results) >= 2


def test_rset_refused_ends_the_shared_session(sandbox: Sandbox) -> None:
    async def go() -> tuple[list[Result], list[bytes], int, Counter[str]]:
        async with await start_hostile_smtp("rset_refused") as server:
            for name in ("shared-a.example", "shared-b.example"):
                add_hostile_zone(sandbox.world, name, mx=[f"mx.{name}"])
                add_hostile_zone(sandbox.world, name, hosts={f"mx.{name}": [server.host]})
            config = sandbox.mapper_config(**FAST, smtp_port=server.port)
            addresses = [f"a{i}@shared-a.example" for i in range(3)] + [
                f"b{i}@shared-b.example" for i in range(3)
            ]
            async with Verifier(config) as verifier:
                results = await verifier.verify_many(addresses)
                counters = Counter(verifier.counters)
            return results, list(server.commands), server.connections, counters

    results, _commands, connections, counters = asyncio.run(go())
    # Accept-all domains: Catch-All, each learned on its own transaction; nothing Invalid.
    assert {pair(r) for r in results} == {("Catch-All", "catch_all")}
    assert not counters["sessions_shared"]  # RSET refused: no domain was served after another
    assert connections >= 2


def test_the_next_domain_costs_one_round_trip_when_pipelining(sandbox: Sandbox) -> None:
    """RSET and the next MAIL FROM go out in one group (RFC 2920 allows both mid-group); once
    the host has answered an RSET with 250, the domain's first RCPT joins them."""
    names = [f"pipelined-{c}.example" for c in "abc"]

    async def go() -> tuple[list[Result], list[bytes], Counter[str]]:
        # A plain pipelining server whose banner comes late enough for every domain's recipients
        # to be waiting when the first session starts.
        async with await start_hostile_smtp("slow_banner", delay=0.3, pipelining=True) as server:
            for name in names:
                add_hostile_zone(sandbox.world, name, mx=[f"mx.{name}"])
                add_hostile_zone(sandbox.world, name, hosts={f"mx.{name}": [server.host]})
            config = sandbox.mapper_config(**FAST, smtp_port=server.port, max_connections_per_mx=1)
            addresses = [f"p{i}@{name}" for name in names for i in range(3)]
            async with Verifier(config) as verifier:
                results = await verifier.verify_many(addresses)
                counters = Counter(verifier.counters)
            return results, list(server.pipelined), counters

    results, pipelined, counters = asyncio.run(go())
    # Accept-all domains: each asks only its random mailbox, so a RCPT that arrived pipelined
    # can only have come with its transaction's RSET and MAIL FROM.
    assert {pair(r) for r in results} == {("Catch-All", "catch_all")}
    assert counters["sessions_shared"] == 2
    assert any(line.upper().startswith(b"MAIL FROM") for line in pipelined), pipelined
    assert any(line.upper().startswith(b"RCPT TO") for line in pipelined), pipelined


def _behind_one_slow_connection(sb: Sandbox, count: int) -> Counter[tuple[str, str]]:
    """`count` recipients of one domain whose server answers every line 0.1 s late, through one
    connection: a session of 0.9 s (3 smtp_timeouts) carries 3 RCPTs."""
    addresses = [f"person{i}@{DOMAIN}" for i in range(count)]

    async def go() -> list[Result]:
        async with await start_hostile_smtp("just_under", delay=0.1) as server:
            add_hostile_zone(sb.world, DOMAIN, a=[server.host])
            config = sb.mapper_config(
                **{**FAST, "smtp_timeout": 0.3}, smtp_port=server.port, max_connections_per_mx=1
            )
            async with Verifier(config) as verifier:
                return await verifier.verify_many(addresses)

    return Counter(pair(r) for r in asyncio.run(go()))


def test_a_slow_server_serves_fewer_recipients_per_session_not_none(sandbox: Sandbox) -> None:
    """A session ends politely before the verification deadline would cut it (which used to
    answer every recipient still waiting with a timeout)."""
    pairs = _behind_one_slow_connection(sandbox, 9)
    assert pairs == {("Valid", "mailbox_exists"): 9}, pairs


def test_a_queue_that_never_moves_ends_in_timeouts(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queued recipients' deadlines are stopped, but not for ever: recipients still queued after
    `QUEUE_PATIENCE` deadlines end Unknown/smtp_timeout (with the default patience all 30 would
    be served), never Invalid."""
    monkeypatch.setattr(prober_module, "QUEUE_PATIENCE", 1)
    pairs = _behind_one_slow_connection(sandbox, 30)
    assert pairs[("Unknown", "smtp_timeout")] >= 1, pairs
    assert pairs[("Valid", "mailbox_exists")] >= 1, pairs
    assert set(pairs) == {("Valid", "mailbox_exists"), ("Unknown", "smtp_timeout")}, pairs


@pytest.fixture(scope="module")
def provider_world() -> Any:
    with Sandbox(World(seed=19, people=1500, case_weights=PROVIDER_CASE_WEIGHTS)) as sb:
        yield sb


def test_domains_of_one_host_share_sessions(provider_world: Sandbox) -> None:
    sb = provider_world
    people = [
        p
        for p in sb.world.iter_people()
        if p.truth.provider == "google_workspace" and p.email and p.email == p.email.strip()
    ]
    domains = {p.email.rsplit("@", 1)[1].lower() for p in people if p.email}
    assert len(domains) >= 4
    sb.obs.reset_counters()
    results, counters = verify_all(
        sb.mapper_config(smtp_timeout=2.0), [p.email for p in people if p.email]
    )
    for person, result in zip(people, results, strict=True):
        assert pair(result) in person.truth.accepted, (person.email, result.evidence.decided_by)
        # A verdict's evidence never holds another recipient's reply.
        others = [
            line
            for line in map(str, result.evidence.smtp_replies)
            if "RCPT" in line and "catch-all" not in line
        ]
        assert len(others) <= 1
    aspmx = next(h.ip for h in sb.world.smtp_hosts.values() if h.hostname == "aspmx.l.google.com")
    assert counters["sessions_shared"] >= 1
    # Recipients per connection at the shared host (the figure: at least 10).
    rcpts = sum(n for address, n in sb.obs.rcpt.items() if address.rsplit("@", 1)[1] in domains)
    assert rcpts / sb.obs.smtp_connections[aspmx] >= 10, (rcpts, sb.obs.smtp_connections[aspmx])
    assert sum(sb.obs.mixed_domain_rejections.values()) == 0
    assert sb.obs.smtp_peak_concurrency[aspmx] <= 3


def test_the_recipient_rate_per_host_holds_without_costing_verdicts(sandbox: Sandbox) -> None:
    """60 recipients at one host under a cap of 600 a minute (10 a second, a burst of 10): about
    5 s of waiting, far past the 1.5 s `verification_deadline`, which the waits do not count."""
    addresses = [f"person{i}@{DOMAIN}" for i in range(60)]

    async def go() -> tuple[list[Result], Counter[str], float, int]:
        async with await start_hostile_smtp("no_pipelining") as server:
            add_hostile_zone(sandbox.world, DOMAIN, a=[server.host])
            config = sandbox.mapper_config(
                smtp_timeout=0.5, smtp_port=server.port, max_rcpt_per_minute_per_mx=600
            )
            async with Verifier(config) as verifier:
                started = asyncio.get_running_loop().time()
                results = await verifier.verify_many(addresses)
                took = asyncio.get_running_loop().time() - started
                return results, Counter(verifier.counters), took, len(rcpt_lines(server.commands))

    results, counters, took, rcpts = asyncio.run(go())
    assert [pair(r) for r in results] == [("Valid", "mailbox_exists")] * len(addresses)
    assert rcpts == len(addresses) and counters["rate_waits"] > 0
    # 10 at once, then one every 60 / (600 - 10) s: the rate never passes the cap.
    assert took >= (len(addresses) - 10) * 60 / 590 * 0.95, took


def test_a_host_asking_to_slow_down_is_asked_again_later(
    provider_world: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gmail's look-alike answers `421 4.7.28 ... unusual rate` past 50 recipients in 4 s (we send
    80 in 4 s at the default cap): the host is paused (4 s here, 10 s in a run), its recipients
    are asked again later in the run at half the rate, and none is left Unknown."""
    monkeypatch.setattr(prober_module, "BACKOFF_FIRST", 4.0)
    sb = provider_world
    people = [
        p
        for p in sb.world.iter_people()
        if p.truth.provider == "gmail" and p.email and p.email == p.email.strip()
    ][:120]
    sb.obs.reset_counters()
    sb.obs.faults.max_rcpt_per_minute, sb.obs.faults.rcpt_rate_window_seconds = 50, 4.0
    try:
        results, counters = verify_all(
            sb.mapper_config(
                smtp_timeout=2.0, greylist_max_wait=60, max_rcpt_per_minute_per_mx=1200
            ),
            [p.email for p in people if p.email],
        )
    finally:
        sb.obs.reset_faults()
    assert sum(sb.obs.smtp_rate_limited.values()) >= 1
    assert counters["rate_deferrals"] >= 1
    for person, result in zip(people, results, strict=True):
        assert pair(result) in person.truth.accepted, (person.email, result.evidence.decided_by)
