"""The world's constant tables: names, domain words, reply wordings, behaviour weights, verdicts.

``world.py`` holds the logic that turns a seed into People, domains and mail hosts; everything it
draws from, and every verdict it can give, is declared here. A leaf module: it imports nothing from
``cio_sandbox``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, TypedDict

# EV_Status values.
VALID, INVALID, CATCH_ALL, DISPOSABLE, UNKNOWN = (
    "Valid",
    "Invalid",
    "Catch-All",
    "Disposable",
    "Unknown",
)

CIO_ID_OFFSET = 0x3000000  # Person i's cio_id is CIO_ID_OFFSET + i in hex
ID_OFFSET = 100000  # and its id (when it has one) ID_OFFSET + i
DNS_TTL = 300
SLOW_DNS_SECONDS = 0.4
DAY = 86400

# Mailboxes that exist on every domain whose mail host answers honestly (RFC 2142 and common role
# names).
ROLE_MAILBOXES = ("info", "support", "admin", "sales", "contact", "billing", "noreply", "hello")

# --- People ---------------------------------------------------------------------------------------
FIRST_NAMES = (
    "maria",
    "john",
    "aiko",
    "omar",
    "lena",
    "carlos",
    "priya",
    "noah",
    "fatima",
    "liam",
    "sofia",
    "chen",
    "amara",
    "lucas",
    "ingrid",
    "mateo",
    "zara",
    "ivan",
    "yuki",
    "emma",
    "kwame",
    "elena",
    "raj",
    "nora",
)
LAST_NAMES = (
    "garcia",
    "smith",
    "tanaka",
    "haddad",
    "muller",
    "silva",
    "patel",
    "brown",
    "khan",
    "oconnor",
    "rossi",
    "wang",
    "okafor",
    "dubois",
    "larsen",
    "lopez",
    "ahmed",
    "petrov",
    "sato",
    "jones",
    "mensah",
    "novak",
)
PLANS = ("free", "pro", "enterprise")
# Malformed addresses: {l} is a local part, {d} a domain of the world.
BAD_SYNTAX = (
    "{l}@",
    "@{d}",
    "{l}..{l}@{d}",
    "{l} {l}@{d}",
    "{l}@@{d}",
    "{l}@{d}.",
    "{l}(at){d}",
    "{l}@-{d}",
    ".{l}@{d}",
    "{l}@{d}..example",
    "{l}@localhost",
    "{l}@[300.1.1.1]",
    '{l}"@{d}',
)

# --- domains and mail hosts -----------------------------------------------------------------------
# Ordinary mail domains are named by two of these words and a number.
DOMAIN_WORDS = (
    "north",
    "wind",
    "blue",
    "harbor",
    "acme",
    "pine",
    "river",
    "stone",
    "bright",
    "cedar",
    "maple",
    "summit",
    "orbit",
    "lumen",
    "delta",
    "falcon",
    "copper",
    "meadow",
    "atlas",
    "nimbus",
    "quartz",
    "ember",
    "tidal",
    "willow",
    "granite",
    "vertex",
    "aurora",
    "sparrow",
    "beacon",
    "cobalt",
)
# Typos of big providers that do not resolve (some typo domains, gmial.com among them, are on the
# disposable list; those would rightly be Disposable, so they are not used here).
TYPO_DOMAINS = ("gmai.com", "gamil.com", "gnail.com", "yaho.com", "outlok.com", "gmail.con")

# SMTP reply texts for "no such user", as real servers word them (reference/email_verification.md
# 5.8-5.10).
USER_UNKNOWN_REPLIES = (
    "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table",
    "550 5.1.1 The email account that you tried to reach does not exist. NoSuchUser",
    "550 Requested action not taken: mailbox unavailable",
    "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302)",
    "550 5.4.1 Recipient address rejected: Access denied. AS(201806281)",
    "550 No such user here",
    "550 5.1.1 Recipient unknown",
)


class HostOptions(TypedDict, total=False):
    """What sets a mail host apart from an honest one (the fields of ``world.SmtpHost``)."""

    max_connections: int | None
    max_rcpt_per_session: int | None
    require_starttls: bool
    esmtp: bool


# Behaviours of whole mail hosts, with what each needs beyond a plain host; two domains of each.
HOST_BEHAVIOURS: dict[str, HostOptions] = {
    "catch_all": {},
    "greylist": {},
    "tarpit": {},
    "policy_block": {},
    "drop_after_banner": {},
    "too_many_rcpt": {"max_rcpt_per_session": 3},
    "busy_421": {"max_connections": 2},
    "starttls": {"require_starttls": True},
}


class Provider(NamedTuple):
    """A big provider's domain, with its real MX host name so provider rules can be exercised."""

    domain: str
    kind: str
    mx_preference: int
    mx_host: str
    behavior: str
    unknown_reply: str | None  # None: one of USER_UNKNOWN_REPLIES, drawn from the world's seed


BIG_PROVIDERS = (
    Provider(
        "gmail.com", "gmail", 5, "gmail-smtp-in.l.google.com", "normal", USER_UNKNOWN_REPLIES[1]
    ),
    Provider(
        "outlook.com",
        "outlook",
        10,
        "outlook-com.olc.protection.outlook.com",
        "normal",
        USER_UNKNOWN_REPLIES[3],
    ),
    *(
        Provider(
            f"contoso-{k}.example",
            "m365",
            0,
            f"contoso-{k}-example.mail.protection.outlook.com",
            "normal",
            USER_UNKNOWN_REPLIES[4],
        )
        for k in range(2)
    ),
    Provider("yahoo.com", "provider_yahoo", 1, "mta5.am0.yahoodns.net", "accept_all", None),
)

# --- behaviours and verdicts ----------------------------------------------------------------------
# World behaviours. Weights are shares of People (per mille) for the default mix.
CASE_WEIGHTS: tuple[tuple[str, int], ...] = (
    ("normal", 330),
    ("gmail", 60),
    ("outlook", 40),
    ("m365", 25),
    ("idn", 10),
    ("no_mx_a", 20),
    ("starttls", 30),
    ("too_many_rcpt", 30),
    ("busy_421", 20),
    ("dead_first_mx", 20),
    ("slow_dns", 20),
    ("catch_all", 40),
    ("greylist", 20),
    ("tarpit", 10),
    ("policy_block", 20),
    ("drop_after_banner", 10),
    ("provider_yahoo", 30),
    ("disposable", 30),
    ("typo", 20),
    ("nxdomain", 10),
    ("null_mx", 10),
    ("no_mx_no_a", 10),
    ("servfail", 10),
    ("bad_syntax", 20),
    ("no_email", 20),
)
# Cases whose mail host answers RCPT honestly, so the mailbox state decides the verdict.
MAILBOX_CASES = frozenset(
    {
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
        "hard_bounce",
    }
)
MAILBOX_WEIGHTS = (("exists", 84), ("unknown", 10), ("disabled", 3), ("full", 3))
# What an honest mail host's answer means, per mailbox state (an existing role mailbox is
# role_based instead).
MAILBOX_VERDICTS = {
    "exists": (VALID, "mailbox_exists"),
    "unknown": (INVALID, "mailbox_not_found"),
    "disabled": (INVALID, "mailbox_disabled"),
    "full": (INVALID, "mailbox_full"),
}

# Behaviours whose verdict does not depend on the mailbox.
FIXED_VERDICTS: dict[str, tuple[str, str]] = {
    "catch_all": (CATCH_ALL, "catch_all"),
    "greylist": (UNKNOWN, "greylisted"),
    "tarpit": (UNKNOWN, "smtp_timeout"),
    "policy_block": (UNKNOWN, "smtp_blocked"),
    "drop_after_banner": (UNKNOWN, "smtp_connection_failed"),
    "provider_yahoo": (UNKNOWN, "provider_unverifiable"),
    "disposable": (DISPOSABLE, "disposable_domain"),
    "typo": (INVALID, "domain_not_found"),
    "nxdomain": (INVALID, "domain_not_found"),
    "null_mx": (INVALID, "null_mx"),
    "no_mx_no_a": (INVALID, "no_mx_record"),
    "servfail": (UNKNOWN, "dns_error"),
}


# --- segments and suppressions --------------------------------------------------------------------
SegmentRule = Callable[[int], bool]
# id, name, type, state, progress, membership rule on the person index
SegmentRow = tuple[int, str, str, str, int | None, SegmentRule]
SEGMENTS: tuple[SegmentRow, ...] = (
    (1, "Signed up last 30 days", "dynamic", "finished", None, lambda i: i % 3 == 0),
    (2, "Paying customers", "manual", "finished", None, lambda i: i % 5 == 1),
    (3, "Newsletter readers", "dynamic", "finished", None, lambda i: i % 7 in (2, 3)),
    (4, "EU visitors", "dynamic", "build", 40, lambda i: i % 11 == 4),
    (5, "Nobody yet", "manual", "finished", None, lambda i: False),
)
# Suppression lists (Customer.io as ESP): Person i is on a list when i % modulus == rest.
SUPPRESSION_RULES: dict[str, tuple[int, int]] = {
    "bounces": (50, 7),
    "invalid_emails": (199, 11),
    "spam_reports": (97, 3),
    "blocks": (89, 4),
}
# Bounces and invalid emails are hard bounces.
HARD_BOUNCE_KINDS = ("bounces", "invalid_emails")
# Each list's reason, as Mailgun records it.
SUPPRESSION_REASONS = {
    "bounces": "smtp; 550 5.1.1 The email account that you tried to reach does not exist",
    "invalid_emails": "Invalid recipient address",
    "spam_reports": "Recipient marked the message as spam",
    "blocks": "smtp; 554 5.7.1 Service unavailable; client host blocked",
}

#: The verifier's own host name in the sandbox: its `helo_hostname` and `mail_from` domain.
VERIFIER_DOMAIN = "verifier.sandbox.example"
