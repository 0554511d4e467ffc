"""DESIGN.md precedence, with DNS and SMTP outcomes injected at the function level.

First match wins: no address, bad syntax, disposable, DNS verdicts, hard-bounce history, then the
mailbox verdict (catch-all, mailbox states, accepted -> role_based / mailbox_exists). The sandbox
tests check the same rules end to end; these pin each tie-break without a network.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest
from mapper_emailverify import Status, SubStatus, Verifier
from mapper_emailverify.engine.dns_lookup import DomainRoute, MailHost
from mapper_emailverify.engine.smtp.prober import Probe


class Fakes:
    """DNS and prober in one: counts calls and answers with the configured outcome per domain."""

    smtp_unavailable = False
    setup_confirmed = True

    def __init__(self) -> None:
        self.dns_verdicts: dict[str, SubStatus | None] = {}
        self.mx: dict[str, list[str]] = {}
        self.probes: dict[str, Probe] = {}
        self.dns_calls: Counter[str] = Counter()
        self.probe_calls: Counter[str] = Counter()

    def reset_loop(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def route(self, domain: str) -> DomainRoute:
        self.dns_calls[domain] += 1
        await asyncio.sleep(0.01)  # let concurrent callers pile up
        names = self.mx.get(domain, [f"mx1.{domain}"])
        hosts = tuple(MailHost(name, 10, ("127.0.0.1",)) for name in names)
        verdict = self.dns_verdicts.get(domain)
        return DomainRoute(domain, verdict, () if verdict else hosts, expires=float("inf"))

    async def probe(self, route: DomainRoute, address: str, needs_utf8: bool = False) -> Probe:
        self.probe_calls[address] += 1
        await asyncio.sleep(0.01)
        return self.probes.get(address, Probe(None, catch_all=False))


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


@pytest.fixture
def verifier(fakes: Fakes) -> Verifier:
    return Verifier(
        {
            "dns_nameservers": ["127.0.0.1:9"],
            "hard_bounces": ["bounced@ok.example"],
            "allow_private_mx": True,  # the fake routes point at 127.0.0.1
            "greylist_max_wait": 0,  # a greylisted verdict stays (the retry is tested below)
        },
        dns=fakes,
        prober=fakes,
    )


def verdict(verifier: Verifier, address: object) -> tuple[str, str]:
    result = asyncio.run(verifier.verify(address))
    return str(result.status), str(result.substatus)


def test_no_address_and_non_strings(verifier: Verifier, fakes: Fakes) -> None:
    assert verdict(verifier, None) == ("Unknown", "no_email")
    assert verdict(verifier, "") == ("Unknown", "no_email")
    assert verdict(verifier, " \t\n") == ("Unknown", "no_email")
    assert verdict(verifier, 42) == ("Invalid", "invalid_syntax")
    assert verdict(verifier, b"a@b.example") == ("Invalid", "invalid_syntax")
    assert verdict(verifier, ["a@b.example"]) == ("Invalid", "invalid_syntax")
    assert not fakes.dns_calls


def test_syntax_before_everything_else(verifier: Verifier, fakes: Fakes) -> None:
    assert verdict(verifier, "bounced@@ok.example") == ("Invalid", "invalid_syntax")
    assert verdict(verifier, "x@mailinator..com") == ("Invalid", "invalid_syntax")
    assert not fakes.dns_calls


def test_disposable_beats_dns(verifier: Verifier, fakes: Fakes) -> None:
    fakes.dns_verdicts["mailinator.com"] = SubStatus.DOMAIN_NOT_FOUND
    assert verdict(verifier, "someone@Mailinator.com") == ("Disposable", "disposable_domain")
    assert verdict(verifier, "someone@inbox.mailinator.com") == ("Disposable", "disposable_domain")
    assert not fakes.dns_calls


@pytest.mark.parametrize(
    "dns_verdict",
    [SubStatus.DOMAIN_NOT_FOUND, SubStatus.NULL_MX, SubStatus.NO_MX_RECORD, SubStatus.DNS_ERROR],
)
def test_dns_verdicts_beat_hard_bounce_history(
    verifier: Verifier, fakes: Fakes, dns_verdict: SubStatus
) -> None:
    fakes.dns_verdicts["ok.example"] = dns_verdict
    status, substatus = verdict(verifier, "bounced@ok.example")
    assert substatus == dns_verdict
    assert status == ("Unknown" if dns_verdict is SubStatus.DNS_ERROR else "Invalid")
    assert not fakes.probe_calls


def test_hard_bounce_beats_smtp(verifier: Verifier, fakes: Fakes) -> None:
    assert verdict(verifier, " Bounced@OK.example ") == ("Invalid", "hard_bounce_history")
    assert not fakes.probe_calls
    verifier.add_hard_bounces(["later@ok.example"])
    assert verdict(verifier, "later@ok.example") == ("Invalid", "hard_bounce_history")


def test_catch_all_beats_mailbox_states_and_role(verifier: Verifier, fakes: Fakes) -> None:
    fakes.probes["info@ca.example"] = Probe(None, catch_all=True)
    assert verdict(verifier, "info@ca.example") == ("Catch-All", "catch_all")


@pytest.mark.parametrize(
    ("probe", "expected"),
    [
        (Probe(None), ("Valid", "mailbox_exists")),
        (Probe(SubStatus.MAILBOX_NOT_FOUND), ("Invalid", "mailbox_not_found")),
        (Probe(SubStatus.MAILBOX_DISABLED), ("Invalid", "mailbox_disabled")),
        (Probe(SubStatus.MAILBOX_FULL), ("Invalid", "mailbox_full")),
        (Probe(SubStatus.GREYLISTED), ("Unknown", "greylisted")),
        (Probe(SubStatus.SMTP_BLOCKED), ("Unknown", "smtp_blocked")),
        (Probe(SubStatus.SMTP_TIMEOUT), ("Unknown", "smtp_timeout")),
        (Probe(SubStatus.SMTP_CONNECTION_FAILED), ("Unknown", "smtp_connection_failed")),
        (Probe(SubStatus.SMTP_UNAVAILABLE), ("Unknown", "smtp_unavailable")),
    ],
)
def test_mailbox_verdicts(
    verifier: Verifier, fakes: Fakes, probe: Probe, expected: tuple[str, str]
) -> None:
    fakes.probes["maria.garcia1@ok.example"] = probe
    assert verdict(verifier, "maria.garcia1@ok.example") == expected


class GreylistThenAnswer(Fakes):
    """Defers each address `deferrals` times (naming `named` seconds when given), then accepts."""

    def __init__(self, deferrals: int, named: float | None = None) -> None:
        super().__init__()
        self.deferrals, self.named = deferrals, named
        self.asked_at: list[float] = []

    async def probe(self, route: DomainRoute, address: str, needs_utf8: bool = False) -> Probe:
        self.probe_calls[address] += 1
        self.asked_at.append(time.monotonic())
        if self.probe_calls[address] <= self.deferrals:
            return Probe(SubStatus.GREYLISTED, rule="deferred ('greylist')", retry_after=self.named)
        return Probe(None, catch_all=False, rule="accepted")


def greylist_verifier(fakes: Fakes, **settings: Any) -> Verifier:
    config = {"dns_nameservers": ["127.0.0.1:9"], "allow_private_mx": True, **settings}
    return Verifier(config, dns=fakes, prober=fakes)


@pytest.mark.parametrize(
    ("named", "settings", "wait"),
    [
        (0.2, {"greylist_retry_after": 30}, 0.2 * 1.1 + 1.0),  # the delay the server named
        (None, {"greylist_retry_after": 0.6}, 0.6),  # greylist_retry_after
    ],
)
def test_a_greylisted_address_is_asked_again_after_the_delay(
    named: float | None, settings: dict[str, Any], wait: float
) -> None:
    fakes = GreylistThenAnswer(deferrals=1, named=named)
    verifier = greylist_verifier(fakes, **settings)
    [result] = verifier.verify_many_sync(["maria.garcia1@grey.example"])
    assert verdict_of(result) == ("Valid", "mailbox_exists")
    first, second = fakes.asked_at
    assert wait <= second - first < wait + 1.0
    assert result.evidence.greylist_retries == 1
    assert verifier.counters["greylisted"] == verifier.counters["greylist_resolved"] == 1
    shown = "(the delay the server named)" if named else "(greylist_retry_after)"
    assert any(shown in step for step in result.evidence.steps)


def test_greylist_retries_stop_at_the_max_wait() -> None:
    fakes = GreylistThenAnswer(deferrals=10)
    verifier = greylist_verifier(fakes, greylist_retry_after=0.5, greylist_max_wait=1.2)
    [result] = verifier.verify_many_sync(["maria.garcia1@grey.example"])
    assert verdict_of(result) == ("Unknown", "greylisted")
    assert fakes.probe_calls["maria.garcia1@grey.example"] == 3  # at 0, 0.5 and 1.0 s
    assert verifier.counters["greylisted"] == 1 and verifier.counters["greylist_resolved"] == 0


def test_a_greylist_wait_holds_no_concurrency_slot() -> None:
    """With one slot, an address behind a greylisted one is answered while the first waits."""
    fakes = GreylistThenAnswer(deferrals=1)
    verifier = greylist_verifier(fakes, concurrency=1, greylist_retry_after=1.0)
    original = fakes.probe

    async def probe(route: DomainRoute, address: str, needs_utf8: bool = False) -> Probe:
        if address.startswith("b@"):
            fakes.asked_at.append(time.monotonic())
            return Probe(None, catch_all=False, rule="accepted")
        return await original(route, address, needs_utf8)

    fakes.probe = probe  # type: ignore[method-assign]
    started = time.monotonic()
    results = verifier.verify_many_sync(["a@grey.example", "b@grey.example"])
    assert [verdict_of(r) for r in results] == [("Valid", "mailbox_exists")] * 2
    b_answered = fakes.asked_at[1] - started
    assert b_answered < 0.5, b_answered  # not after a's 1 s wait


def verdict_of(result: Any) -> tuple[str, str]:
    return str(result.status), str(result.substatus)


def test_role_only_qualifies_an_accepted_mailbox(verifier: Verifier, fakes: Fakes) -> None:
    assert verdict(verifier, "Support@ok.example") == ("Valid", "role_based")
    fakes.probes["sales@ok.example"] = Probe(SubStatus.MAILBOX_NOT_FOUND)
    assert verdict(verifier, "sales@ok.example") == ("Invalid", "mailbox_not_found")


def test_provider_rule_skips_smtp(verifier: Verifier, fakes: Fakes) -> None:
    fakes.mx["yahoo-like.example"] = ["mta5.am0.yahoodns.net"]
    assert verdict(verifier, "someone@yahoo-like.example") == ("Unknown", "provider_unverifiable")
    assert verdict(verifier, "someone@yahoo.com") == ("Unknown", "provider_unverifiable")
    assert not fakes.probe_calls


def test_smtp_check_off_stops_after_dns() -> None:
    fakes = Fakes()
    verifier = Verifier(
        {"smtp_check": False, "dns_nameservers": ["127.0.0.1:9"]}, dns=fakes, prober=fakes
    )
    assert verdict(verifier, "maria@ok.example") == ("Unknown", "smtp_unavailable")
    fakes.dns_verdicts["gone.example"] = SubStatus.DOMAIN_NOT_FOUND
    assert verdict(verifier, "maria@gone.example") == ("Invalid", "domain_not_found")
    assert not fakes.probe_calls


def test_one_lookup_per_domain_and_one_verification_per_address(
    verifier: Verifier, fakes: Fakes
) -> None:
    inputs = [
        "Maria@ok.example",
        " maria@OK.example",
        "MARIA@ok.example",
        "john@ok.example",
        "maria@ok.example",
    ]
    results = asyncio.run(verifier.verify_many(inputs * 3))
    assert [r.status for r in results] == [Status.VALID] * 15
    assert fakes.dns_calls == {"ok.example": 1}
    assert fakes.probe_calls == {"Maria@ok.example": 1, "john@ok.example": 1}
    assert results[1].evidence.input == " maria@OK.example"  # the evidence speaks of its own input
    # A later run (another event loop) reuses what was learned.
    assert verdict(verifier, "maria@ok.example") == ("Valid", "mailbox_exists")
    assert fakes.probe_calls["Maria@ok.example"] == 1


def test_verify_many_keeps_input_order(verifier: Verifier, fakes: Fakes) -> None:
    fakes.dns_verdicts["gone.example"] = SubStatus.DOMAIN_NOT_FOUND
    inputs = [None, "a@gone.example", "x", "b@ok.example", "c@mailinator.com"]
    results = verifier.verify_many_sync(inputs)
    assert [str(r.substatus) for r in results] == [
        "no_email",
        "domain_not_found",
        "invalid_syntax",
        "mailbox_exists",
        "disposable_domain",
    ]
