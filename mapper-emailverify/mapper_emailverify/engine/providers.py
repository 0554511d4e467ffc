"""Provider rules as data: how the mail systems most People use answer probes.

One row per provider (`RULES`), found by the domain where the MX does not show it (gmail.com and
a Google Workspace domain share Google's MX hosts) and else by MX host suffix. A row says how many
recipients a session may carry, whether the catch-all probe tells anything, whether a RCPT answer
is evidence at all, whether a deferral there is greylisting, and which reply texts mean something
other than the generic reading (`smtp/replies.py`). Each fact cites its source; the sources are
collected in `../shared/reference/mail_providers.md` of the project. Adding a provider is one row
here and one case in `tests/test_providers.py`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from mapper_emailverify.engine.smtp.replies import Outcome, Reading, Reply

#: The family name a provider override gives in the evidence ("smtp: 0 provider rule").
FAMILY = "0 provider rule"


@dataclass(frozen=True)
class ReplyOverride:
    """A reply text that means something else at this provider than the generic rules read."""

    pattern: re.Pattern[str]  # searched in the lower-case reply text (code and enhanced code too)
    outcome: Outcome
    why: str
    permanent: bool | None = None  # True: 5xx only; False: 4xx only; None: either

    def read(self, reply: Reply) -> Reading | None:
        if self.permanent is not None and (reply.code >= 500) != self.permanent:
            return None
        if not self.pattern.search(f"{reply.code} {reply.text}".lower()):
            return None
        return Reading(self.outcome, self.why, FAMILY)


def _override(
    pattern: str, outcome: Outcome, why: str, permanent: bool | None = None
) -> ReplyOverride:
    return ReplyOverride(re.compile(pattern), outcome, why, permanent)


@dataclass(frozen=True)
class ProviderRule:
    """What one provider's mail servers mean, and how to ask them politely."""

    name: str  # stable: `backend_by_provider` keys, the run report and the evidence use it
    mx_suffixes: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()  # exact domains; "yahoo." matches every yahoo.<tld>
    #: Recipients one session (one transaction) may carry; None: the engine's default.
    rcpt_per_session: int | None = None
    #: False where the random-address probe only costs a RCPT (the provider has no catch-all).
    catch_all_probe: bool = True
    #: False where every RCPT is accepted and bounces come later: no verdict from SMTP at all.
    rcpt_is_evidence: bool = True
    #: A deferral at RCPT there is greylisting (retried later in the run).
    greylists: bool = False
    overrides: tuple[ReplyOverride, ...] = ()
    #: A free mail service for the public (consumer domains), not a host of companies' domains.
    free: bool = False

    def read(self, reply: Reply) -> Reading | None:
        """The provider's own reading of a RCPT reply, or None to leave it to the generic rules."""
        for override in self.overrides:
            reading = override.read(reply)
            if reading is not None:
                return Reading(
                    reading.outcome, f"{self.name}: {reading.rule}", f"{FAMILY} ({self.name})"
                )
        return None

    def matches_domain(self, domain: str) -> bool:
        """An exact entry, or "yahoo." followed by a public suffix of short labels (yahoo.co.uk,
        yahoo.com.br; never yahoo.acme.example)."""
        for entry in self.domains:
            if not entry.endswith("."):
                if domain == entry:
                    return True
            elif domain.startswith(entry):
                rest = domain[len(entry) :].split(".")
                if len(rest) <= 2 and all(0 < len(label) <= 3 for label in rest):
                    return True
        return False

    def matches_mx(self, host: str) -> bool:
        return any(_ends_with_label(host, suffix) for suffix in self.mx_suffixes)


# Gmail and Google Workspace: "451 4.3.0 Multiple destination domains per transaction is
# unsupported" and "452 4.5.3 Domain policy size per transaction exceeded" ask for a new
# transaction; neither is about the recipient (Sisimai: Rhost/Google.pm).
_GOOGLE_TRANSACTION = (
    _override(
        r"multiple destination domains per transaction",
        Outcome.TOO_MANY_RECIPIENTS,
        "one domain per transaction (451 4.3.0): a session limit, not a verdict",
    ),
    _override(
        r"domain policy size per transaction",
        Outcome.TOO_MANY_RECIPIENTS,
        "transaction size policy (452 4.5.3): a session limit, not a verdict",
    ),
)

# Microsoft 365 / Exchange Online (Sisimai: Rhost/Microsoft.pm; Reacher #1185, #1334, #569).
_MICROSOFT = (
    # Directory-based edge blocking: the recipient is not in the tenant's directory.
    _override(
        r"5\.4\.1 .*recipient address rejected: access denied",
        Outcome.NOT_FOUND,
        "not in the tenant's directory (DBEB, 550 5.4.1 'Access denied')",
        permanent=True,
    ),
    # "5.7.504 Recipient address rejected: Access denied" is listed as an invalid recipient.
    _override(
        r"5\.7\.504 .*recipient address rejected",
        Outcome.NOT_FOUND,
        "invalid recipient (5.7.504 'Recipient address rejected')",
        permanent=True,
    ),
    _override(
        r"5\.1\.10\b",
        Outcome.NOT_FOUND,
        "recipient not found (5.1.10)",
        permanent=True,
    ),
    # "451 4.4.4 Temporary server error" answers random probes: a deferral, never a verdict.
    _override(r"4\.4\.4\b", Outcome.DEFERRED, "temporary server error (4.4.4)", permanent=False),
    # "4.5.3 Too many recipients" (over 200 recipients from one domain): a session limit.
    _override(
        r"4\.5\.3\b",
        Outcome.TOO_MANY_RECIPIENTS,
        "too many recipients (4.5.3): a session limit",
        permanent=False,
    ),
)

RULES: tuple[ProviderRule, ...] = (
    # Gmail consumer: no catch-all, so the random-address probe costs a RCPT for nothing (Reacher
    # PR #1336 skips it: "we only make 1 check instead of 2"); 550 5.1.1 NoSuchUser at RCPT.
    ProviderRule(
        "gmail",
        domains=("gmail.com", "googlemail.com"),
        catch_all_probe=False,
        overrides=_GOOGLE_TRANSACTION,
        free=True,
    ),
    # Workspace admins can route unknown users to a catch-all mailbox (support.google.com/a/
    # answer/33962), so the probe is meaningful on custom domains.
    ProviderRule(
        "google_workspace",
        mx_suffixes=("google.com", "googlemail.com"),
        overrides=_GOOGLE_TRANSACTION,
    ),
    # Outlook.com / Hotmail: one RCPT per session; a second gets "452 4.5.3" or "Recipients belong
    # to multiple regions", and reading that as a verdict is the false "no" of AfterShip #72 (#55,
    # #152). Consumer domains have no catch-all. "550 5.5.0 ... mailbox unavailable" is an unknown
    # user (Sisimai: "similar to 5.1.10").
    ProviderRule(
        "outlook",
        mx_suffixes=("olc.protection.outlook.com",),
        domains=("outlook.com", "hotmail.", "live.", "msn.com", "passport.com", "windowslive.com"),
        rcpt_per_session=1,
        catch_all_probe=False,
        overrides=(
            _override(
                r"^452\b|4\.5\.3\b|recipients belong to multiple regions",
                Outcome.TOO_MANY_RECIPIENTS,
                "one recipient per session (452 / 4.5.3): never a verdict on this recipient",
                permanent=False,
            ),
            _override(
                r"5\.5\.0 .*mailbox unavailable",
                Outcome.NOT_FOUND,
                "unknown user (550 5.5.0 'mailbox unavailable')",
                permanent=True,
            ),
            *_MICROSOFT,
        ),
        free=True,
    ),
    ProviderRule(
        "microsoft365",
        mx_suffixes=("mail.protection.outlook.com", "mx.microsoft"),
        overrides=_MICROSOFT,
    ),
    # Yahoo and AOL accept every RCPT; "554 delivery error: dd This user doesn't have a yahoo.com
    # account" comes after DATA (truemail-go #91, AfterShip #57).
    ProviderRule(
        "yahoo",
        mx_suffixes=("yahoodns.net",),
        domains=("yahoo.", "ymail.com", "rocketmail.com", "aol.com", "aim.com", "aol."),
        rcpt_is_evidence=False,
        free=True,
    ),
    # Mail.ru answers "250 Go ahead" for random addresses (Reacher #1208, #771).
    ProviderRule(
        "mailru",
        mx_suffixes=("mxs.mail.ru", "mail.ru"),
        domains=("mail.ru", "inbox.ru", "list.ru", "bk.ru", "internet.ru"),
        rcpt_is_evidence=False,
        free=True,
    ),
    # Yandex says "550 5.7.1 No such user!" for a missing mailbox: a 5.7.x code that reads as
    # policy (maxcom/lorsource #1094, chatmail/core PR #1748).
    ProviderRule(
        "yandex",
        mx_suffixes=("mx.yandex.net", "yandex.net", "yandex.ru"),
        domains=("yandex.ru", "yandex.com", "ya.ru", "yandex.by", "yandex.kz", "yandex.ua"),
        overrides=(
            _override(
                r"no such user",
                Outcome.NOT_FOUND,
                "missing mailbox ('No such user!' under 5.7.1)",
                permanent=True,
            ),
        ),
        free=True,
    ),
    # Zoho greylists at RCPT: "451 4.7.1 Greylisted, try again after some time"; unknown users get
    # "550 5.1.1 User does not exist" (Sisimai: Rhost/Zoho.pm, Reacher #487).
    ProviderRule(
        "zoho",
        mx_suffixes=("zoho.com", "zoho.eu", "zoho.in", "zohomail.com", "zoho.com.au"),
        domains=("zohomail.com", "zoho.com"),
        greylists=True,
    ),
    # iCloud: "550 5.1.1 <x>: inactive email address", "unknown or illegal alias" at RCPT
    # (Sisimai: Rhost/Apple.pm).
    ProviderRule(
        "icloud",
        mx_suffixes=("mail.icloud.com",),
        domains=("icloud.com", "me.com", "mac.com"),
        free=True,
    ),
    # GMX / Web.de send no enhanced status codes ("550 ... User is unknown", "Unknown local part");
    # the text decides (postmaster.gmx.com/en/error-messages).
    ProviderRule(
        "gmx",
        mx_suffixes=("gmx.net", "web.de", "gmx.com"),
        domains=("gmx.", "web.de", "mail.com"),
        overrides=(
            _override(
                r"user is unknown|unknown local part|user unknown",
                Outcome.NOT_FOUND,
                "unknown user (GMX/Web.de wording, no enhanced code)",
                permanent=True,
            ),
        ),
        free=True,
    ),
    # Proton: "550 5.1.1 Address does not exist" at RCPT; an existing address gets 250.
    ProviderRule(
        "proton",
        mx_suffixes=("protonmail.ch",),
        domains=("proton.me", "protonmail.com", "protonmail.ch", "pm.me"),
        free=True,
    ),
)

NAMES: tuple[str, ...] = tuple(rule.name for rule in RULES)
_BY_NAME = {rule.name: rule for rule in RULES}


def _ends_with_label(name: str, suffix: str) -> bool:
    name = name.lower().rstrip(".")
    return name == suffix or name.endswith("." + suffix)


def identify(domain: str, mx_hosts: Iterable[str] = ()) -> ProviderRule | None:
    """The provider rule for a domain: its own domain first (gmail.com on Google's MX is Gmail,
    not Workspace), then the first MX host any rule claims; None for everyone else."""
    domain = domain.lower().rstrip(".")
    for rule in RULES:
        if rule.matches_domain(domain):
            return rule
    for host in mx_hosts:
        for rule in RULES:
            if rule.matches_mx(host):
                return rule
    return None


def rule_named(name: str) -> ProviderRule:
    return _BY_NAME[name]


def unverifiable_provider(domain: str, mx_hosts: Iterable[str]) -> str | None:
    """Why SMTP cannot tell about mailboxes of this domain (a short reason), or None."""
    rule = identify(domain, mx_hosts)
    if rule is None or rule.rcpt_is_evidence:
        return None
    return f"{rule.name} accepts every recipient at RCPT and bounces later"
