"""The engine against the sandbox mail world: real DNS and SMTP servers on loopback.

Every world behaviour and every taxonomy row, the precedence rules end to end, and the sharing and
politeness promises (one DNS lookup and one catch-all probe per domain, one RCPT per address,
sessions reused, at most `max_connections_per_mx` connections per mail host).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Iterable
from typing import Any

import pytest
from cio_sandbox import Sandbox, World
from mapper_emailverify import PAIRS, Result, Verifier

FAST = {"smtp_timeout": 1.5, "dns_timeout": 2.0}


def settings(sb: Sandbox, **over: Any) -> dict[str, Any]:
    return sb.mapper_config(**{**FAST, **over})


def hard_bounces(world: World) -> list[str]:
    return [row["email"] for kind in world.HARD_BOUNCE_KINDS for row in world.suppressions(kind)]


def run(
    config: dict[str, Any], addresses: Iterable[object], bounces: Iterable[str] = ()
) -> list[Result]:
    async def go() -> list[Result]:
        async with Verifier({**config, "hard_bounces": list(bounces)}) as verifier:
            return await verifier.verify_many(addresses)

    return asyncio.run(go())


def pair(result: Result) -> tuple[str, str]:
    return str(result.status), str(result.substatus)


def case_addresses(world: World) -> dict[str, object]:
    """One address (or non-address) per world behaviour and mailbox state."""
    picks: dict[str, object] = {}
    for case in (
        "normal",
        "gmail",
        "outlook",
        "m365",
        "idn",
        "no_mx_a",
        "starttls",
        "too_many_rcpt",
        "busy_421",
        "dead_first_mx",
        "slow_dns",
    ):
        for mailbox in ("exists", "unknown", "disabled", "full"):
            with contextlib.suppress(LookupError):  # not every state occurs on every domain kind
                picks[f"{case}/{mailbox}"] = world.address_for(case, mailbox)
    for case in (
        "catch_all",
        "greylist",
        "tarpit",
        "drop_after_banner",
        "provider_yahoo",
        "disposable",
        "nxdomain",
        "null_mx",
        "no_mx_no_a",
        "servfail",
        "bad_syntax",
        "hard_bounce",
    ):
        picks[case] = world.address_for(case)
    picks["policy_block/banner"] = "maria.garcia1@policy-block-0.example"
    picks["policy_block/rcpt"] = "maria.garcia1@policy-block-1.example"
    picks["typo"] = "maria.garcia1@gmai.com"
    picks["role"] = "info@" + next(d for d, v in world.domains.items() if v.kind == "normal")
    picks["disposable/subdomain"] = "someone@inbox.mailinator.com"
    picks["no_email"] = None
    picks["padded"] = next(
        p.email
        for p in world.iter_people()
        if p.email and p.email != p.email.strip() and p.truth.status != "Invalid"
    )
    picks["mixed_case"] = next(
        p.email
        for p in world.iter_people()
        if p.email
        and "@" in p.email
        and p.email.split("@")[1].isupper()
        and p.truth.case == "normal"
    )
    picks["idn/unicode"] = next(
        p.email for p in world.iter_people() if p.truth.case == "idn" and p.email and "ü" in p.email
    )
    return picks


def expected(world: World, key: str, address: object) -> frozenset[tuple[str, str]]:
    if address is None:
        return frozenset({("Unknown", "no_email")})
    if key == "bad_syntax":
        return frozenset({("Invalid", "invalid_syntax")})
    person = world.person_by_email(str(address))
    truth = person.truth if person is not None else world.truth_for_address(str(address))
    assert truth is not None, key
    return truth.accepted


@pytest.fixture(scope="module")
def behaviours(sandbox: Sandbox) -> dict[str, tuple[object, Result]]:
    picks = case_addresses(sandbox.world)
    results = run(settings(sandbox), picks.values(), hard_bounces(sandbox.world))
    return {
        key: (address, result)
        for (key, address), result in zip(picks.items(), results, strict=True)
    }


# The session `sandbox` fixture serves World(seed=7, people=3000): the same picks, known at
# collection.
CASES = list(case_addresses(World(seed=7, people=3000)))


@pytest.mark.parametrize("key", CASES)
def test_world_behaviour(
    sandbox: Sandbox, behaviours: dict[str, tuple[object, Result]], key: str
) -> None:
    address, result = behaviours[key]
    assert pair(result) in expected(sandbox.world, key, address), result.evidence.steps


def test_every_taxonomy_row_is_produced(behaviours: dict[str, tuple[object, Result]]) -> None:
    seen = {pair(result) for _, result in behaviours.values()}
    # Not in the sandbox world: blocked egress (test_engine_network produces smtp_unavailable) and a
    # temporarily full mailbox, 452 4.2.2 (test_engine_smtp_edge produces Unknown/mailbox_full).
    # Nor mx_not_public: the sandbox opts in to its loopback mail hosts (test_hostile_smtp has it).
    elsewhere = {
        ("Unknown", "smtp_unavailable"),
        ("Unknown", "mailbox_full"),
        ("Unknown", "mx_not_public"),
    }
    assert PAIRS - elsewhere <= seen, sorted(PAIRS - seen)


def test_evidence_trail(behaviours: dict[str, tuple[object, Result]]) -> None:
    _, valid = behaviours["normal/exists"]
    assert valid.evidence.mx_hosts and valid.evidence.smtp_replies
    assert any(r.command == "RCPT" and r.code == 250 for r in valid.evidence.smtp_replies)
    assert valid.evidence.catch_all is False
    _, gone = behaviours["normal/unknown"]
    assert any(r.command == "RCPT" and r.code == 550 for r in gone.evidence.smtp_replies)
    _, dead = behaviours["dead_first_mx/exists"]
    assert "refused" in dead.evidence.mx_tried[0] and "connected" in dead.evidence.mx_tried[1]
    _, typo = behaviours["typo"]
    assert typo.evidence.did_you_mean == "gmail.com"
    _, implicit = behaviours["no_mx_a/exists"]
    assert implicit.evidence.implicit_mx
    # EHLO refused, HELO fallback
    assert any(r.command == "HELO" for r in implicit.evidence.smtp_replies)
    _, tls = behaviours["starttls/exists"]
    assert any(r.command == "STARTTLS" and r.code == 220 for r in tls.evidence.smtp_replies)
    _, idn = behaviours["idn/unicode"]
    assert idn.evidence.domain and idn.evidence.domain.startswith("bücher")


def test_precedence_end_to_end(sandbox_faults_reset: Sandbox) -> None:
    sb, world = sandbox_faults_reset, sandbox_faults_reset.world
    bounced = next(
        p for p in world.iter_people() if p.truth.case == "hard_bounce" and p.mailbox == "exists"
    )
    on_nxdomain = world.address_for("nxdomain")
    disposable = world.address_for("disposable")
    results = run(
        settings(sb), [bounced.email, on_nxdomain, disposable], [bounced.email, on_nxdomain]
    )
    assert [pair(r) for r in results] == [
        (
            "Invalid",
            "hard_bounce_history",
        ),  # hard-bounce history beats the mailbox verdict (it exists)
        ("Invalid", "domain_not_found"),  # DNS verdicts beat hard-bounce history
        ("Disposable", "disposable_domain"),  # disposable beats everything after syntax
    ]
    assert not sb.obs.rcpt  # none of them needed a mailbox probe
    disposable_domain = disposable.strip().rsplit("@", 1)[1].lower()
    assert not any(name == disposable_domain for name, _ in sb.obs.dns_queries)
    # Without the bounce history the same person is judged by the mail host.
    assert [pair(r) for r in run(settings(sb), [bounced.email])] == [("Valid", "mailbox_exists")]


def test_sharing_and_politeness(sandbox_faults_reset: Sandbox) -> None:
    """One lookup and one catch-all probe per domain, one RCPT per address, reuse, MX cap."""
    sb, world = sandbox_faults_reset, sandbox_faults_reset.world
    people = [
        p
        for p in world.iter_people()
        if p.email
        and p.truth.case
        in ("normal", "gmail", "catch_all", "too_many_rcpt", "busy_421", "starttls", "greylist")
    ]
    inputs = [p.email for p in people] * 2  # every address twice
    results = run(
        settings(sb, concurrency=200, max_connections_per_mx=2), inputs, hard_bounces(world)
    )
    misses = [
        (p.truth.case, pair(r))
        for p, r in zip(people, results, strict=False)
        if pair(r) not in p.truth.accepted
    ]
    assert not misses
    domains = {p.email.strip().rsplit("@", 1)[1].lower() for p in people}
    assert all(sb.obs.dns_queries[(d, "MX")] == 1 for d in domains)
    asked = {p.email.strip().lower() for p in people}
    probes = collections.Counter(a.rsplit("@", 1)[1] for a in sb.obs.rcpt if a not in asked)
    assert probes and max(probes.values()) == 1  # at most one random-address probe per domain
    repeated = {a: n for a, n in sb.obs.rcpt.items() if a in asked and n > 1}
    # Only a "452 4.5.3 too many recipients" makes us ask again, and only once per domain and
    # session.
    assert all(a.endswith(".example") and "too-many-rcpt" in a for a in repeated), repeated
    assert sum(sb.obs.smtp_connections.values()) < len(asked) / 3  # several RCPTs per session
    assert max(sb.obs.smtp_peak_concurrency.values()) <= 2


def test_one_connection_per_mail_host_when_asked(sandbox_faults_reset: Sandbox) -> None:
    sb, world = sandbox_faults_reset, sandbox_faults_reset.world
    sb.obs.faults.smtp_latency = 0.02  # slow replies make overlapping sessions likely
    gmail = [p.email for p in world.iter_people() if p.truth.case == "gmail"][:60]
    results = run(
        settings(sb, concurrency=100, max_connections_per_mx=1, smtp_max_rcpt_per_session=5), gmail
    )
    assert len(results) == len(gmail)
    assert max(sb.obs.smtp_peak_concurrency.values()) == 1
    # The per-session recipient cap was honoured.
    assert sum(sb.obs.smtp_connections.values()) >= len(gmail) // 5


def test_dns_cache_honours_ttl(sandbox_faults_reset: Sandbox) -> None:
    sb, world = sandbox_faults_reset, sandbox_faults_reset.world
    emails = [p.email for p in world.iter_people() if p.truth.case == "normal" and p.email][:40]
    domain = emails[0].strip().rsplit("@", 1)[1].lower()
    same_domain = [e for e in emails if e.strip().lower().endswith("@" + domain)]
    verifier = Verifier(settings(sb))

    async def verify(addresses: list[str]) -> list[Result]:
        return await verifier.verify_many(addresses)

    asyncio.run(verify([*same_domain, "x@broken-dns-0.example"]))
    route = verifier._routes[domain]
    remaining = route.expires - time.monotonic()
    assert 280 < remaining <= 300  # the zone's TTL (300 s), not a fixed cache lifetime
    # Errors are kept briefly.
    assert verifier._routes["broken-dns-0.example"].expires - time.monotonic() <= 15
    # Another run of the same Verifier: still cached.
    asyncio.run(verify([f"someone.else@{domain}"]))
    assert sb.obs.dns_queries[(domain, "MX")] == 1
    route.expires = time.monotonic() - 1  # as if the TTL had run out
    asyncio.run(verify([f"another.one@{domain}"]))
    assert sb.obs.dns_queries[(domain, "MX")] == 2
