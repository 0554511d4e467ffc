"""The world is deterministic, consistent with DESIGN.md's precedence, and O(1) per Person."""

from __future__ import annotations

import ipaddress
from collections import Counter

import pytest
from cio_sandbox.world import MAILBOX_CASES, ROLE_MAILBOXES, World, normalize_address

TAXONOMY = {
    "Valid": {"role_based", "mailbox_exists"},
    "Invalid": {
        "invalid_syntax",
        "domain_not_found",
        "no_mx_record",
        "null_mx",
        "mailbox_not_found",
        "mailbox_disabled",
        "mailbox_full",
        "hard_bounce_history",
    },
    "Disposable": {"disposable_domain"},
    "Catch-All": {"catch_all"},
    "Unknown": {
        "smtp_timeout",
        "smtp_connection_failed",
        "greylisted",
        "smtp_blocked",
        "dns_error",
        "provider_unverifiable",
        "smtp_unavailable",
        "no_email",
    },
}


@pytest.fixture(scope="module")
def world() -> World:
    return World(seed=7, people=3000)


def test_same_seed_same_world(world: World) -> None:
    again = World(seed=7, people=3000, now=world.now)
    assert [again.person(i) for i in range(300)] == [world.person(i) for i in range(300)]
    other = World(seed=8, people=3000, now=world.now)
    assert [other.person(i).email for i in range(50)] != [world.person(i).email for i in range(50)]


def test_every_label_is_in_the_taxonomy(world: World) -> None:
    for person in world.iter_people():
        truth = person.truth
        assert truth.substatus in TAXONOMY[truth.status], truth
        assert (truth.status, truth.substatus) in truth.accepted
        for status, substatus in truth.accepted:
            assert substatus in TAXONOMY[status]


def test_world_covers_every_behaviour(world: World) -> None:
    cases = Counter(p.truth.case for p in world.iter_people())
    expected = {
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
        "catch_all",
        "greylist",
        "tarpit",
        "policy_block",
        "drop_after_banner",
        "provider_yahoo",
        "disposable",
        "typo",
        "nxdomain",
        "null_mx",
        "no_mx_no_a",
        "servfail",
        "bad_syntax",
        "no_email",
        "hard_bounce",
    }
    assert expected <= set(cases), expected - set(cases)
    statuses = Counter(p.truth.status for p in world.iter_people())
    assert set(statuses) == set(TAXONOMY)


def test_people_shapes(world: World) -> None:
    people = list(world.iter_people())
    assert len({p.cio_id for p in people}) == len(people)
    email_only = [p for p in people if p.id is None]
    assert email_only and all(p.email for p in email_only)
    assert all(isinstance(v, str) for p in people for v in p.attributes.values())
    carrying = [p for p in people if "EV_Status" in p.attributes]
    ages = [world.now - int(p.attributes["EV_Validation_Timestamp"]) for p in carrying]
    assert any(age < 90 * 86400 for age in ages) and any(age > 90 * 86400 for age in ages)
    emails = Counter(normalize_address(p.email) for p in people if p.email)
    assert any(n > 1 for n in emails.values()), "the world should contain duplicate addresses"
    assert any(p.email != p.email.strip() or p.email != p.email.lower() for p in people if p.email)
    assert any(not p.email.isascii() for p in people if p.email), (
        "the world should contain IDN addresses"
    )


def test_lookups_round_trip(world: World) -> None:
    for person in world.iter_people():
        assert world.person_by_cio_id(person.cio_id) == person
        if person.id is not None:
            assert world.person_by_id(person.id) == person
        if person.email and person.truth.substatus not in ("invalid_syntax", "role_based"):
            found = world.person_by_email(person.email)
            assert found is not None and found.truth == person.truth
        if person.email and person.truth.substatus != "invalid_syntax":
            assert world.truth_for_address(person.email) == person.truth
    assert world.person_by_cio_id("zzz") is None
    assert world.person_by_id("1") is None


def test_mailbox_state_is_what_the_truth_says(world: World) -> None:
    for person in world.iter_people():
        if person.truth.case in MAILBOX_CASES - {"hard_bounce"}:
            assert world.mailbox_state(person.email) == person.mailbox
    domain = next(iter(world.domains))
    assert world.mailbox_state(f"q8z1k2j3h4g5f6d@{domain}") == "unknown", (
        "random probes must not exist"
    )
    assert world.mailbox_state(f"{ROLE_MAILBOXES[0]}@{domain}") == "exists"


def test_hard_bounces_are_in_the_suppression_lists(world: World) -> None:
    bounced = {row["email"] for kind in world.HARD_BOUNCE_KINDS for row in world.suppressions(kind)}
    hard = {
        normalize_address(p.email) for p in world.iter_people() if p.truth.case == "hard_bounce"
    }
    assert hard and hard <= bounced
    assert world.suppressions("spam_reports")


def test_segments_membership(world: World) -> None:
    ids = {s["id"] for s in world.segments}
    assert ids == {1, 2, 3, 4, 5}
    assert any(s["state"] == "build" for s in world.segments)
    for person in world.iter_people():
        assert set(person.segments) <= ids
    assert not any(5 in p.segments for p in world.iter_people())


def test_dns_and_mail_hosts_stay_on_loopback(world: World) -> None:
    for records in world.zone.values():
        for ip in records.get("A", []):
            assert ipaddress.ip_address(ip).is_loopback
    for ip in [*world.smtp_hosts, *world.dead_ips]:
        assert ipaddress.ip_address(ip).is_loopback
    assert world.zone["null-mx-0.example"]["MX"] == ["0 ."]
    assert "MX" not in world.zone["no-mail-0.example"]
    assert "expired-startup-0.example" not in world.zone


def test_a_million_people_cost_nothing_up_front() -> None:
    big = World(seed=3, people=1_000_000, domains=500)
    last = big.person(999_999)
    assert big.person_by_cio_id(last.cio_id) == last
    assert len(big.smtp_hosts) > 500


def test_typo_domains_are_not_disposable(world: World) -> None:
    from disposable_email_domains import blocklist

    typos = [name for name, domain in world.domains.items() if domain.kind == "typo"]
    assert typos and not any(name in blocklist for name in typos)
