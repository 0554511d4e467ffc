"""DESIGN.md precedence, with DNS and SMTP outcomes injected at the function level.

First match wins: no address, bad syntax, disposable, DNS verdicts, hard-bounce history, then the
mailbox verdict (catch-all, mailbox states, accepted -> role_based / mailbox_exists). The sandbox
tests check the same rules end to end; these pin each tie-break without a network.
"""

from __future__ import annotations

import asyncio
from collections import Counter

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
