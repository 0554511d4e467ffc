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
    greylist_seconds: float
    provider: str | None
    ident: str | None
    ok_reply: str | None
    disabled_reply: str | None
    greylist_reply: str | None
    rcpt_limit_reply: str | None
    enhanced_status_codes: bool
    one_domain_per_transaction: bool
    catch_all_domains: frozenset[str]
    pipelining: bool
    refuse_rset: bool
    max_rcpt_per_minute: int | None
    rate_limit_reply: str | None


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


# --- provider look-alikes (issue 18) --------------------------------------------------------------
# Replies of the big providers as /work/shared/reference/mail_providers.md quotes them; {rcpt} is
# the recipient, {seconds} the seconds left in a greylist window.
GOOGLE_IDENT = "ESMTP - gsmtp"
GMAIL_UNKNOWN = USER_UNKNOWN_REPLIES[1]
GOOGLE_DISABLED = "550 5.2.1 The email account that you tried to reach is disabled."
#: Gmail and Google Workspace: a RCPT whose domain differs from an accepted one in the transaction.
GOOGLE_MIXED_DOMAINS = (
    "451 4.3.0 Multiple destination domains per transaction is unsupported. Please try again."
)
MICROSOFT_IDENT = "Microsoft ESMTP MAIL Service ready"
OUTLOOK_UNKNOWN = USER_UNKNOWN_REPLIES[3]
#: Outlook.com / Hotmail: every RCPT after the first of a connection (outlook.com, hotmail.com).
OUTLOOK_SECOND_RCPT = (
    "452 4.5.3 Recipients belong to multiple regions",
    "452 4.5.3 Too many recipients",
)
M365_DBEB_UNKNOWN = (
    "550 5.4.1 Recipient address rejected: Access denied. AS(201806281) "
    "[BN8NAM12FT043.eop-nam12.prod.protection.outlook.com]"
)
M365_OPEN_OK = "250 2.1.5 Recipient OK"  # a tenant without DBEB: anything is "OK"
MAILRU_OK = "250 Go ahead"
YANDEX_UNKNOWN = "550 5.7.1 No such user!"
ZOHO_UNKNOWN = "550 5.1.1 User does not exist - {rcpt}"
ZOHO_OK = "250 Recipient <{rcpt}> OK"
ZOHO_GREYLISTED = "451 4.7.1 Greylisted, try again after some time"  # names no delay
POSTGREY_GREYLISTED = (
    "450 4.2.0 <{rcpt}>: Recipient address rejected: Greylisted, please try again in {seconds} "
    "seconds"
)
ICLOUD_UNKNOWN = "550 5.1.1 <{rcpt}>: user does not exist"
ICLOUD_DISABLED = "550 5.1.1 <{rcpt}>: inactive email address"
# GMX / Web.de ("Nemesis") send no enhanced status codes; GMX words "unknown" one of two ways.
GMX_IDENT = "Nemesis ESMTP Service ready"
GMX_UNKNOWN = (
    "550 Requested action not taken: mailbox unavailable",
    "550 <{rcpt}>: User is unknown",
)
WEBDE_UNKNOWN = "550 Unknown local part"
PROTON_UNKNOWN = "550 5.1.1 Address does not exist"
PROTON_OK = "250 2.1.5 Ok"


# Replies to a client over a host's max_rcpt_per_minute ({client}: the client's address, {host}:
# the host's name), by provider; None: any other host. A 421 closes the connection (RFC 5321
# 3.8), Microsoft's 451 does not.
GOOGLE_RATE_LIMITED = (
    "421 4.7.28 [{client}] Our system has detected an unusual rate of unsolicited mail "
    "originating from your IP address. To protect our users from spam, mail sent from your IP "
    "address has been temporarily rate limited."
)
MICROSOFT_SERVER_BUSY = (
    "451 4.7.500 Server busy. Please try again later from [{client}]. (S77714) [{host}]"
)
GENERIC_RATE_LIMITED = "421 4.7.0 Too many messages, slow down"
RATE_LIMIT_REPLIES: dict[str | None, str] = {
    "gmail": GOOGLE_RATE_LIMITED,
    "google_workspace": GOOGLE_RATE_LIMITED,
    "outlook": MICROSOFT_SERVER_BUSY,
    "microsoft365": MICROSOFT_SERVER_BUSY,
    None: GENERIC_RATE_LIMITED,
}
#: A host with refuse_rset answers RSET so (Postfix's wording for a command it does not know),
#: and keeps the transaction.
RSET_REFUSED = "502 5.5.2 Error: command not recognized"


class Provider(NamedTuple):
    """A big provider's domain, with its real MX host name so provider rules can be exercised."""

    domain: str
    kind: str
    mx_preference: int
    mx_host: str
    behavior: str
    unknown_reply: str | None  # None: one of USER_UNKNOWN_REPLIES, drawn from the world's seed
    options: HostOptions


BIG_PROVIDERS = (
    Provider(
        "gmail.com",
        "gmail",
        5,
        "gmail-smtp-in.l.google.com",
        "normal",
        GMAIL_UNKNOWN,
        {
            "provider": "gmail",
            "ident": GOOGLE_IDENT,
            "disabled_reply": GOOGLE_DISABLED,
            "one_domain_per_transaction": True,
        },
    ),
    Provider(
        "outlook.com",
        "outlook",
        10,
        "outlook-com.olc.protection.outlook.com",
        "normal",
        OUTLOOK_UNKNOWN,
        {
            "provider": "outlook",
            "ident": MICROSOFT_IDENT,
            "max_rcpt_per_session": 1,
            "rcpt_limit_reply": OUTLOOK_SECOND_RCPT[0],
        },
    ),
    *(
        Provider(
            f"contoso-{k}.example",
            "m365",
            0,
            f"contoso-{k}-example.mail.protection.outlook.com",
            "normal",
            M365_DBEB_UNKNOWN,
            {"provider": "microsoft365", "ident": MICROSOFT_IDENT},
        )
        for k in range(2)
    ),
    Provider(
        "yahoo.com",
        "provider_yahoo",
        1,
        "mta5.am0.yahoodns.net",
        "accept_all",
        None,
        {"provider": "yahoo"},
    ),
)


class LookalikeHost(NamedTuple):
    """A provider look-alike added after every other mail host, so the default world's People and
    host addresses stay as they were. One host may serve several domains (Google Workspace)."""

    provider: str | None  # one of PROVIDER_NAMES; None: not a big provider
    mx_host: str
    mx_preference: int
    domains: tuple[tuple[str, str], ...]  # (domain, case) the host receives mail for
    behavior: str
    # "no such user"; a tuple: one of them, drawn per host from the world's seed
    unknown_reply: str | tuple[str, ...]
    options: HostOptions


#: Google Workspace domains (one host for all); the last routes unknown users to a catch-all.
WORKSPACE_DOMAINS = tuple(f"northwind-ws-{k}.example" for k in range(6))
LOOKALIKE_HOSTS: tuple[LookalikeHost, ...] = (
    LookalikeHost(
        "google_workspace",
        "aspmx.l.google.com",
        1,
        (
            *((name, "google_workspace") for name in WORKSPACE_DOMAINS[:-1]),
            (WORKSPACE_DOMAINS[-1], "google_workspace_catch_all"),
        ),
        "normal",
        GMAIL_UNKNOWN,
        {
            "ident": GOOGLE_IDENT,
            "disabled_reply": GOOGLE_DISABLED,
            "one_domain_per_transaction": True,
            "catch_all_domains": frozenset(WORKSPACE_DOMAINS[-1:]),
        },
    ),
    LookalikeHost(
        "outlook",
        "hotmail-com.olc.protection.outlook.com",
        2,
        (("hotmail.com", "hotmail"),),
        "normal",
        OUTLOOK_UNKNOWN,
        {
            "ident": MICROSOFT_IDENT,
            "max_rcpt_per_session": 1,
            "rcpt_limit_reply": OUTLOOK_SECOND_RCPT[1],
        },
    ),
    LookalikeHost(
        "microsoft365",
        "fabrikam-0-example.mail.protection.outlook.com",
        0,
        (("fabrikam-0.example", "m365_catch_all"),),
        "catch_all",
        M365_DBEB_UNKNOWN,
        {"ident": MICROSOFT_IDENT, "ok_reply": M365_OPEN_OK},
    ),
    LookalikeHost(
        "yahoo",
        "mx-aol.mail.gm0.yahoodns.net",
        1,
        (("aol.com", "provider_aol"),),
        "accept_all",
        USER_UNKNOWN_REPLIES[0],
        {},
    ),
    LookalikeHost(
        "yandex",
        "mx.yandex.net",
        10,
        (("yandex.ru", "yandex"),),
        "normal",
        YANDEX_UNKNOWN,
        {},
    ),
    LookalikeHost(
        "mailru",
        "mxs.mail.ru",
        10,
        (("mail.ru", "mailru"),),
        "accept_all",
        USER_UNKNOWN_REPLIES[0],
        {"ok_reply": MAILRU_OK},
    ),
    LookalikeHost(
        "zoho",
        "mx.zoho.com",
        10,
        (("zohomail.com", "zoho"), ("zylker-0.example", "zoho")),
        "greylist",
        ZOHO_UNKNOWN,
        {"ok_reply": ZOHO_OK, "greylist_reply": ZOHO_GREYLISTED, "greylist_seconds": 3.0},
    ),
    LookalikeHost(
        None,
        "mx1.postgrey-0.example",
        10,
        (("postgrey-0.example", "postgrey"),),
        "greylist",
        USER_UNKNOWN_REPLIES[0],
        {"greylist_reply": POSTGREY_GREYLISTED, "greylist_seconds": 4.0},
    ),
    LookalikeHost(
        "icloud",
        "mx01.mail.icloud.com",
        10,
        (("icloud.com", "icloud"),),
        "normal",
        ICLOUD_UNKNOWN,
        {"disabled_reply": ICLOUD_DISABLED},
    ),
    LookalikeHost(
        "gmx",
        "mx00.gmx.net",
        10,
        (("gmx.net", "gmx"),),
        "normal",
        GMX_UNKNOWN,
        {"ident": GMX_IDENT, "enhanced_status_codes": False},
    ),
    LookalikeHost(
        "gmx",
        "mx-ha03.web.de",
        10,
        (("web.de", "gmx"),),
        "normal",
        WEBDE_UNKNOWN,
        {"ident": GMX_IDENT, "enhanced_status_codes": False},
    ),
    LookalikeHost(
        "proton",
        "mail.protonmail.ch",
        10,
        (("proton.me", "proton"),),
        "normal",
        PROTON_UNKNOWN,
        {"ok_reply": PROTON_OK},
    ),
)

# --- shared mail hosts (issue 19): World(shared_domains=N) ----------------------------------------
# Many custom domains on a few hosts, as in a real SaaS workspace: Google Workspace domains on the
# look-alike aspmx.l.google.com; Microsoft 365 tenants, each with its own MX name
# (<domain with dashes>.mail.protection.outlook.com) but all resolving to one address, as Exchange
# Online Protection's pool does; and a hosting provider's MX serving many small businesses.
SHARED_WORKSPACE_HOST = "aspmx.l.google.com"
SHARED_EOP_HOST = "eop-nam12.mail.protection.outlook.com"  # the one host behind every tenant MX
SHARED_HOSTING_HOST = "mx.hostingco.example"
EOP_MX_SUFFIX = "mail.protection.outlook.com"
#: (case, name infix, share of shared_domains in tenths): N domains split 4:3:3 (at least one each).
SHARED_DOMAIN_KINDS: tuple[tuple[str, str, int], ...] = (
    ("shared_workspace", "gw", 4),
    ("shared_m365", "mt", 3),
    ("shared_hosting", "hc", 3),
)
# An opt-in mix for World(shared_domains=N, case_weights=SHARED_HOST_CASE_WEIGHTS), per mille: 80%
# on the three shared hosts (Workspace 30% with the northwind-ws domains, Microsoft 365 tenants
# 25%, the hosting provider 25%), gmail 10%, the rest ordinary hosts, Outlook.com, Yahoo, dead
# domains and People without an address.
SHARED_HOST_CASE_WEIGHTS: tuple[tuple[str, int], ...] = (
    ("shared_workspace", 280),
    ("google_workspace", 20),
    ("shared_m365", 250),
    ("shared_hosting", 250),
    ("gmail", 100),
    ("normal", 50),
    ("outlook", 20),
    ("provider_yahoo", 10),
    ("nxdomain", 10),
    ("no_email", 10),
)

#: The providers People can be grouped by (``Truth.provider``, ``World.provider_of``); People on
#: any other mail system have provider None.
PROVIDER_NAMES = (
    "gmail",
    "google_workspace",
    "outlook",
    "microsoft365",
    "yahoo",
    "mailru",
    "yandex",
    "zoho",
    "icloud",
    "gmx",
    "proton",
)
#: Each case (a domain's kind) of a big provider, and that provider.
PROVIDER_OF_KIND: dict[str, str] = {
    "gmail": "gmail",
    "google_workspace": "google_workspace",
    "google_workspace_catch_all": "google_workspace",
    "outlook": "outlook",
    "hotmail": "outlook",
    "m365": "microsoft365",
    "m365_catch_all": "microsoft365",
    "provider_yahoo": "yahoo",
    "provider_aol": "yahoo",
    "yandex": "yandex",
    "mailru": "mailru",
    "zoho": "zoho",
    "icloud": "icloud",
    "gmx": "gmx",
    "proton": "proton",
    "shared_workspace": "google_workspace",
    "shared_m365": "microsoft365",
}

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
# An opt-in mix where most People sit on the big providers, as in a real SaaS workspace
# (``World(case_weights=PROVIDER_CASE_WEIGHTS)``), per mille: gmail 25%, Google Workspace 15%,
# Outlook.com 10%, Microsoft 365 10%, Yahoo/AOL 6%, iCloud 5%, Zoho 5%, a Postgrey host 3%,
# Yandex 3%, Mail.ru 3%, GMX/Web.de 4%, Proton 3%, ordinary hosts the rest.
PROVIDER_CASE_WEIGHTS: tuple[tuple[str, int], ...] = (
    ("normal", 80),
    ("gmail", 250),
    ("google_workspace", 130),
    ("google_workspace_catch_all", 20),
    ("outlook", 70),
    ("hotmail", 30),
    ("m365", 85),
    ("m365_catch_all", 15),
    ("provider_yahoo", 45),
    ("provider_aol", 15),
    ("icloud", 50),
    ("zoho", 50),
    ("postgrey", 30),
    ("yandex", 30),
    ("mailru", 30),
    ("gmx", 40),
    ("proton", 30),
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
        # provider look-alikes
        "google_workspace",
        "hotmail",
        "yandex",
        "zoho",
        "postgrey",
        "icloud",
        "gmx",
        "proton",
        # shared mail hosts
        "shared_workspace",
        "shared_m365",
        "shared_hosting",
    }
)
# Mailbox cases whose host greylists each new (client, sender, recipient) first: the honest verdict
# is the truth (a verifier that waits the window out gets it), and "greylisted" is also accepted.
GREYLIST_THEN_HONEST_CASES = frozenset({"zoho", "postgrey"})
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
    "provider_aol": (UNKNOWN, "provider_unverifiable"),
    "mailru": (UNKNOWN, "provider_unverifiable"),
    "google_workspace_catch_all": (CATCH_ALL, "catch_all"),
    "m365_catch_all": (CATCH_ALL, "catch_all"),
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
