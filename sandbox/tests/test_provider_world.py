"""The provider look-alikes (issue 18): mail hosts named by the big providers' real MX host names,
each answering as /work/shared/reference/mail_providers.md describes, seen through the sandbox's
own DNS and plain smtplib; their ground truth per provider; and the default world unchanged."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import smtplib
import time
from collections import Counter
from collections.abc import Callable, Iterator

import dns.resolver
import pytest
from cio_sandbox import Person, Sandbox, World
from cio_sandbox.report import accuracy_by_provider
from cio_sandbox.world import PROVIDER_CASE_WEIGHTS, PROVIDER_NAMES, ROLE_MAILBOXES

MakeSandbox = Callable[..., Sandbox]
SENDER = "probe@verifier.sandbox.example"
STRANGER = "zq8v0k3x9w2m1t"  # a random local part, as a catch-all probe uses

# Every provider domain, its real MX host name and the provider People on it are grouped under.
PROVIDER_DOMAINS = {
    "gmail.com": ("gmail-smtp-in.l.google.com", "gmail"),
    **{f"northwind-ws-{k}.example": ("aspmx.l.google.com", "google_workspace") for k in range(6)},
    "outlook.com": ("outlook-com.olc.protection.outlook.com", "outlook"),
    "hotmail.com": ("hotmail-com.olc.protection.outlook.com", "outlook"),
    "contoso-0.example": ("contoso-0-example.mail.protection.outlook.com", "microsoft365"),
    "contoso-1.example": ("contoso-1-example.mail.protection.outlook.com", "microsoft365"),
    "fabrikam-0.example": ("fabrikam-0-example.mail.protection.outlook.com", "microsoft365"),
    "yahoo.com": ("mta5.am0.yahoodns.net", "yahoo"),
    "aol.com": ("mx-aol.mail.gm0.yahoodns.net", "yahoo"),
    "yandex.ru": ("mx.yandex.net", "yandex"),
    "mail.ru": ("mxs.mail.ru", "mailru"),
    "zohomail.com": ("mx.zoho.com", "zoho"),
    "zylker-0.example": ("mx.zoho.com", "zoho"),
    "postgrey-0.example": ("mx1.postgrey-0.example", None),
    "icloud.com": ("mx01.mail.icloud.com", "icloud"),
    "gmx.net": ("mx00.gmx.net", "gmx"),
    "web.de": ("mx-ha03.web.de", "gmx"),
    "proton.me": ("mail.protonmail.ch", "proton"),
}


@pytest.fixture(scope="module")
def provider_sandbox() -> Iterator[Sandbox]:
    with Sandbox(World(seed=7, people=3000, case_weights=PROVIDER_CASE_WEIGHTS)) as sb:
        yield sb


@pytest.fixture
def sb(provider_sandbox: Sandbox) -> Iterator[Sandbox]:
    """The provider world's sandbox with faults and counters reset around the test."""
    provider_sandbox.obs.reset_faults()
    provider_sandbox.obs.reset_counters()
    yield provider_sandbox
    provider_sandbox.obs.reset_faults()


def _mx_ip(world: World, domain: str) -> str:
    (_, exchange), *_ = sorted(world.domains[domain].mx)
    return world.zone[exchange]["A"][0]


@contextlib.contextmanager
def _session(sb: Sandbox, domain: str, sender: str = SENDER) -> Iterator[smtplib.SMTP]:
    """EHLO and MAIL FROM done, on the domain's mail host."""
    client = smtplib.SMTP(_mx_ip(sb.world, domain), sb.smtp_port, timeout=5)
    try:
        assert client.ehlo("verifier.sandbox.example")[0] == 250
        assert client.mail(sender)[0] == 250
        yield client
    finally:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            client.quit()
        client.close()


def _probe(sb: Sandbox, address: str, sender: str = SENDER) -> tuple[int, str]:
    """One verifier-style session for one recipient: its RCPT reply."""
    address = address.strip()
    with _session(sb, address.rpartition("@")[2].lower(), sender) as client:
        code, text = client.rcpt(address)
        return code, text.decode()


def _host(domain: str) -> str:
    return PROVIDER_DOMAINS[domain][0]


def _addresses(world: World) -> list[tuple[Person, str]]:
    return [(p, p.email) for p in world.iter_people() if p.email is not None]


# ---------------------------------------------------------------------- the default world stays
# Computed from the default World() before the look-alikes were added.
FIRST_200_SHA256 = "0fec0bfcaeadb62f2afc1aa94e1dd26b126771a59c21bdcb8581f5c84aac6e5d"
EVERY_PERSON_SHA256 = "656bd063e7428db4d434b970cbebf2f5791bf26b4e1e70acbdf4c6b73364703c"
FIRST_75_HOSTS_SHA256 = "f133aee63341879fa95c175cf8b7744c27e5bfdcb048aa86eef38fa9adb2b70d"


def test_the_default_world_is_unchanged() -> None:
    world = World()
    first = hashlib.sha256()
    for i in range(200):
        person = world.person(i)
        first.update(json.dumps([person.email, person.truth.case]).encode() + b"\n")
    assert first.hexdigest() == FIRST_200_SHA256
    every = hashlib.sha256()
    for p in world.iter_people():
        row = [p.email, p.truth.case, p.truth.status, p.truth.substatus, p.mailbox, p.cio_id, p.id]
        every.update(json.dumps(row).encode() + b"\n")
    assert every.hexdigest() == EVERY_PERSON_SHA256
    hosts = list(world.smtp_hosts.values())
    old = sorted((h.hostname, h.ip) for h in hosts[:75])
    assert hashlib.sha256(json.dumps(old).encode()).hexdigest() == FIRST_75_HOSTS_SHA256
    by_name = {h.hostname: h.ip for h in hosts}
    assert by_name["gmail-smtp-in.l.google.com"] == "127.0.1.57"
    assert by_name["outlook-com.olc.protection.outlook.com"] == "127.0.1.58"
    assert by_name["mta5.am0.yahoodns.net"] == "127.0.1.61"
    assert by_name["mx.inbox.mailinator.com"] == "127.0.1.77"
    # The look-alikes come after every existing host, and no People of the default mix are on them.
    assert [h.hostname for h in hosts[75:]][:2] == [
        "aspmx.l.google.com",
        "hotmail-com.olc.protection.outlook.com",
    ]
    assert {p.truth.provider for p in world.iter_people()} == {
        None,
        "gmail",
        "outlook",
        "microsoft365",
        "yahoo",
    }
    for case, provider in [
        ("gmail", "gmail"),
        ("outlook", "outlook"),
        ("m365", "microsoft365"),
        ("provider_yahoo", "yahoo"),
    ]:
        person = world.person_by_email(world.address_for(case))
        assert person is not None and person.truth.provider == provider


# ---------------------------------------------------------------------- DNS
def test_every_provider_host_resolves_through_the_sandbox_dns(sb: Sandbox) -> None:
    host, port = sb.dns_nameserver.rsplit(":", 1)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = int(port)
    resolver.lifetime = 3.0
    for domain, (mx_host, provider) in PROVIDER_DOMAINS.items():
        mx = resolver.resolve(domain, "MX")
        assert [r.exchange.to_text() for r in mx] == [f"{mx_host}."], domain
        (a,) = resolver.resolve(mx_host, "A")
        assert sb.world.smtp_hosts[a.to_text()].hostname == mx_host
        assert sb.world.smtp_hosts[a.to_text()].provider == provider
        assert sb.world.provider_of(domain) == provider
        assert sb.world.provider_of(f"someone@{domain.upper()}") == provider


# ---------------------------------------------------------------------- honest providers' replies
@pytest.mark.parametrize(
    ("domain", "code", "text"),
    [
        (
            "gmail.com",
            550,
            "5.1.1 The email account that you tried to reach does not exist. NoSuchUser",
        ),
        (
            "northwind-ws-0.example",
            550,
            "5.1.1 The email account that you tried to reach does not exist. NoSuchUser",
        ),
        ("outlook.com", 550, "5.5.0 Requested action not taken: mailbox unavailable (S2017062302)"),
        ("hotmail.com", 550, "5.5.0 Requested action not taken: mailbox unavailable (S2017062302)"),
        (
            "contoso-0.example",
            550,
            "5.4.1 Recipient address rejected: Access denied. AS(201806281) "
            "[BN8NAM12FT043.eop-nam12.prod.protection.outlook.com]",
        ),
        ("yandex.ru", 550, "5.7.1 No such user!"),
        ("icloud.com", 550, "5.1.1 <{rcpt}>: user does not exist"),
        ("web.de", 550, "Unknown local part"),
        ("proton.me", 550, "5.1.1 Address does not exist"),
    ],
)
def test_unknown_mailbox_replies(sb: Sandbox, domain: str, code: int, text: str) -> None:
    address = f"{STRANGER}@{domain}"
    assert _probe(sb, address) == (code, text.format(rcpt=address))
    truth = sb.world.truth_for_address(address)
    assert truth is not None
    assert (truth.status, truth.substatus) == ("Invalid", "mailbox_not_found")
    assert truth.provider == PROVIDER_DOMAINS[domain][1]


def test_people_of_honest_providers_get_their_mailbox_answered(sb: Sandbox) -> None:
    world = sb.world
    for case in ("gmail", "google_workspace", "hotmail", "yandex", "icloud", "gmx", "proton"):
        assert _probe(sb, world.address_for(case, "exists"))[0] == 250, case
        unknown = world.address_for(case, "unknown")
        assert _probe(sb, unknown)[0] == 550, case
        person = world.person_by_email(unknown)
        assert person is not None and world.truth_for_address(unknown) == person.truth
    assert _probe(sb, world.address_for("proton", "exists")) == (250, "2.1.5 Ok")


def test_disabled_mailboxes(sb: Sandbox) -> None:
    gmail = sb.world.address_for("gmail", "disabled")
    code, text = _probe(sb, gmail)
    assert code == 550 and text.startswith("5.2.1 ") and "disabled" in text
    icloud = sb.world.address_for("icloud", "disabled")
    assert _probe(sb, icloud) == (550, f"5.1.1 <{icloud.strip().lower()}>: inactive email address")


@pytest.mark.parametrize(
    ("domain", "reply", "truth"),
    [
        ("yahoo.com", "2.1.5 OK", ("Unknown", "provider_unverifiable")),
        ("aol.com", "2.1.5 OK", ("Unknown", "provider_unverifiable")),
        ("mail.ru", "Go ahead", ("Unknown", "provider_unverifiable")),
        ("fabrikam-0.example", "2.1.5 Recipient OK", ("Catch-All", "catch_all")),
        ("northwind-ws-5.example", "2.1.5 OK", ("Catch-All", "catch_all")),
    ],
)
def test_hosts_that_accept_every_recipient(
    sb: Sandbox, domain: str, reply: str, truth: tuple[str, str]
) -> None:
    address = f"{STRANGER}@{domain}"
    assert _probe(sb, address) == (250, reply)
    found = sb.world.truth_for_address(address)
    assert found is not None and (found.status, found.substatus) == truth


# ---------------------------------------------------------------------- protocol rules
def test_outlook_takes_one_recipient_per_session(sb: Sandbox) -> None:
    world = sb.world
    for domain, refusal in [
        ("outlook.com", "4.5.3 Recipients belong to multiple regions"),
        ("hotmail.com", "4.5.3 Too many recipients"),
    ]:
        case = domain.partition(".")[0]
        real = world.address_for(case, "exists")
        with _session(sb, domain) as client:
            assert client.rcpt(f"{STRANGER}@{domain}")[0] == 550  # the catch-all probe first...
            assert client.rcpt(real) == (452, refusal.encode())  # ...spoils the real one
            client.rset()  # RSET starts a transaction, not a session
            client.mail(SENDER)
            assert client.rcpt(real)[0] == 452
        assert _probe(sb, real)[0] == 250  # alone on its connection, the answer is honest
        assert sb.obs.rcpt_limit_rejections[_host(domain)] == 2
    assert sb.obs.snapshot()["rcpt_limit_rejections"] == {
        "outlook-com.olc.protection.outlook.com": 2,
        "hotmail-com.olc.protection.outlook.com": 2,
    }


@pytest.mark.parametrize("domain", ["gmail.com", "northwind-ws-1.example"])
def test_google_refuses_two_domains_in_one_transaction(sb: Sandbox, domain: str) -> None:
    other = "northwind-ws-2.example" if domain == "gmail.com" else "gmail.com"
    mixed = (
        451,
        b"4.3.0 Multiple destination domains per transaction is unsupported. Please try again.",
    )
    with _session(sb, domain) as client:
        assert client.rcpt(f"{STRANGER}@{domain}")[0] == 550  # refused: no domain accepted yet
        assert client.rcpt(f"info@{other}")[0] == 250  # so this one sets the domain
        assert client.rcpt(f"info@{domain}") == mixed
        assert client.rcpt(f"support@{other}")[0] == 250  # the same domain again is fine
        client.rset()
        client.mail(SENDER)
        assert client.rcpt(f"info@{domain}")[0] == 250  # a new transaction starts over
        assert client.rcpt(f"info@{other}") == mixed
    assert sb.obs.mixed_domain_rejections == Counter({_host(domain): 2})


def test_gmx_and_webde_send_no_enhanced_status_codes(sb: Sandbox) -> None:
    for domain in ("gmx.net", "web.de"):
        with contextlib.closing(smtplib.SMTP(timeout=5)) as client:
            code, banner = client.connect(_mx_ip(sb.world, domain), sb.smtp_port)
            assert (code, banner) == (220, f"{_host(domain)} Nemesis ESMTP Service ready".encode())
            assert client.ehlo("verifier.sandbox.example")[0] == 250
            assert not client.has_extn("enhancedstatuscodes")
            assert client.mail(SENDER) == (250, b"OK")
            code, text = client.rcpt(f"{STRANGER}@{domain}")
            assert code == 550 and not re.match(rb"\d\.\d+\.\d+", text)
            assert client.rcpt(f"info@{domain}")[0] == 250
            assert client.docmd("DATA") == (554, b"This sandbox accepts no messages")
    gmx = f"{STRANGER}@gmx.net"
    assert _probe(sb, gmx) in [
        (550, "Requested action not taken: mailbox unavailable"),
        (550, f"<{gmx}>: User is unknown"),
    ]
    assert _probe(sb, f"{STRANGER}@web.de") == (550, "Unknown local part")
    # Other hosts still advertise and send enhanced codes.
    with contextlib.closing(
        smtplib.SMTP(_mx_ip(sb.world, "proton.me"), sb.smtp_port, timeout=5)
    ) as client:
        client.ehlo("verifier.sandbox.example")
        assert client.has_extn("enhancedstatuscodes")


# ---------------------------------------------------------------------- greylisting
def test_greylist_windows_of_the_hosts(sb: Sandbox) -> None:
    windows = {h.hostname: h.greylist_seconds for h in sb.world.smtp_hosts.values()}
    assert windows["mx.zoho.com"] == 3.0
    assert windows["mx1.postgrey-0.example"] == 4.0
    assert windows["mx1.greylist-0.example"] == 300.0


def test_zoho_greylists_without_naming_a_delay_then_answers_honestly(sb: Sandbox) -> None:
    sb.obs.faults.greylist_seconds = 1.0
    sender = "zoho-test@verifier.sandbox.example"
    real = sb.world.address_for("zoho", "exists")
    unknown = sb.world.address_for("zoho", "unknown")
    greylisted = (451, "4.7.1 Greylisted, try again after some time")
    assert _probe(sb, real, sender) == greylisted
    assert _probe(sb, unknown, sender) == greylisted
    assert _probe(sb, real, sender) == greylisted  # retried too early
    time.sleep(1.1)
    lowered = real.strip().lower()
    assert _probe(sb, real, sender) == (250, f"Recipient <{lowered}> OK")
    assert _probe(sb, unknown, sender) == (
        550,
        f"5.1.1 User does not exist - {unknown.strip().lower()}",
    )
    assert _probe(sb, real, "another@verifier.sandbox.example") == greylisted  # a new triplet
    for address, verdict in [
        (real, ("Valid", "mailbox_exists")),
        (unknown, ("Invalid", "mailbox_not_found")),
    ]:
        truth = sb.world.truth_for_address(address)
        assert truth is not None and truth.provider == "zoho"
        assert (truth.status, truth.substatus) == verdict
        assert ("Unknown", "greylisted") in truth.accepted


def test_postgrey_names_the_seconds_left(sb: Sandbox) -> None:
    sender = "postgrey-test@verifier.sandbox.example"
    address = sb.world.address_for("postgrey", "exists")
    pattern = re.compile(
        r"4\.2\.0 <(?P<rcpt>[^>]+)>: Recipient address rejected: Greylisted, please try again in "
        r"(?P<n>\d+) seconds"
    )
    code, text = _probe(sb, address, sender)
    found = pattern.fullmatch(text)
    assert code == 450 and found is not None, text
    assert found["rcpt"] == address.strip().lower()
    assert found["n"] == "4"  # the host's own window, nearly all of it left
    sb.obs.faults.greylist_seconds = 1.0  # the switch shortens every greylisting host's window
    code, text = _probe(sb, address, sender)
    found = pattern.fullmatch(text)
    assert code == 450 and found is not None and found["n"] == "1"  # at least 1
    time.sleep(1.05)
    assert _probe(sb, address, sender) == (250, "2.1.5 OK")
    truth = sb.world.truth_for_address(address)
    assert truth is not None and truth.provider is None
    assert ("Unknown", "greylisted") in truth.accepted and truth.status == "Valid"


def test_the_switch_shortens_the_plain_greylist_hosts_too(make_sandbox: MakeSandbox) -> None:
    sb = make_sandbox()  # the default world, with its 300 s greylist hosts
    sb.obs.faults.greylist_seconds = 0.5
    address = sb.world.address_for("greylist")
    assert _probe(sb, address) == (451, "4.7.1 Greylisted, please try again later")
    time.sleep(0.6)
    assert _probe(sb, address)[0] in (250, 550, 552)


# ---------------------------------------------------------------------- what the servers count
def test_recipients_of_no_person_are_counted_per_host(sb: Sandbox) -> None:
    world = sb.world
    real = world.address_for("gmail", "exists")
    _probe(sb, real)
    _probe(sb, f"{ROLE_MAILBOXES[0]}@gmail.com")
    _probe(sb, f"{STRANGER}@gmail.com")
    _probe(sb, f"{STRANGER}@outlook.com")
    _probe(sb, f"{STRANGER}@northwind-ws-5.example")
    assert sb.obs.stranger_rcpts == Counter(
        {
            "gmail-smtp-in.l.google.com": 1,
            "outlook-com.olc.protection.outlook.com": 1,
            "aspmx.l.google.com": 1,
        }
    )
    assert sb.obs.snapshot()["stranger_rcpts"]["gmail-smtp-in.l.google.com"] == 1
    sb.obs.reset_traffic()
    assert not sb.obs.stranger_rcpts


# ---------------------------------------------------------------------- ground truth per provider
def test_the_provider_mix_puts_most_people_on_the_big_providers(provider_sandbox: Sandbox) -> None:
    world = provider_sandbox.world
    people = list(world.iter_people())
    by_provider = Counter(p.truth.provider for p in people)
    assert set(by_provider) == {*PROVIDER_NAMES, None}
    assert 0.2 < by_provider["gmail"] / len(people) < 0.3
    assert by_provider[None] / len(people) < 0.2  # normal, postgrey and hard bounces
    cases = Counter(p.truth.case for p in people)
    for case in ("google_workspace_catch_all", "m365_catch_all", "provider_aol", "postgrey"):
        assert cases[case] > 0
    stats = world.stats()
    assert stats["people"] == len(people) and stats["by_case"] == dict(cases)
    for person in people:
        assert person.email is not None
        assert world.provider_of(person.email) == person.truth.provider
        assert world.truth_for_address(person.email) == person.truth
        assert (person.truth.status, person.truth.substatus) in person.truth.accepted
        if person.truth.case in ("zoho", "postgrey"):
            assert ("Unknown", "greylisted") in person.truth.accepted


def test_accuracy_by_provider(provider_sandbox: Sandbox) -> None:
    world = provider_sandbox.world
    people = _addresses(world)
    ideal = {email: (p.truth.status, p.truth.substatus) for p, email in people}
    rows = accuracy_by_provider(world, ideal)
    assert list(rows) == [*PROVIDER_NAMES, "other"]
    assert sum(r.people for r in rows.values()) == len(people)
    for row in rows.values():
        assert row.people == row.correct == row.exact > 0
        assert row.false_invalid == row.false_valid == 0
        assert row.accuracy == 1.0
    # A verifier that gives up on greylisting, reads Outlook's 452 as "no such user" and calls
    # catch-all mailboxes Valid.
    not_found = ("Invalid", "mailbox_not_found")
    verdicts = dict(ideal)
    for p, email in people:
        if p.truth.case in ("zoho", "postgrey"):
            verdicts[email] = ("Unknown", "greylisted")
        elif p.truth.provider == "outlook":
            verdicts[email] = not_found
        elif p.truth.status == "Catch-All":
            verdicts[email] = ("Valid", "mailbox_exists")
    rows = accuracy_by_provider(world, verdicts)
    zoho = rows["zoho"]
    assert zoho.correct == zoho.people and zoho.exact == 0
    outlook = rows["outlook"]
    on_outlook = [p.truth for p, _ in people if p.truth.provider == "outlook"]
    assert outlook.false_invalid == sum(t.status != "Invalid" for t in on_outlook) > 0
    assert (
        outlook.correct
        == outlook.exact
        == sum((t.status, t.substatus) == not_found for t in on_outlook)
    )
    assert rows["google_workspace"].false_valid == sum(
        p.truth.case == "google_workspace_catch_all" for p, _ in people
    )
    assert rows["microsoft365"].false_valid == sum(
        p.truth.case == "m365_catch_all" for p, _ in people
    )
    assert rows["gmail"].as_dict()["accuracy"] == 1.0
    # Only addresses with a verdict count.
    person, email = people[0]
    one = accuracy_by_provider(world, {email: (person.truth.status, person.truth.substatus)})
    assert sum(row.people for row in one.values()) == sum(e == email for _, e in people)
    assert accuracy_by_provider(world, {}) == {}
