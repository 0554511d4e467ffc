"""Why an address came out Unknown, and what the user can do about it (the run report's groups).

`explain(result)` reads a verdict's evidence and names its *cause*, one of `CAUSES`: the substatus
first, then, for a refusal, the stage of the conversation the server refused at (the command of the
decisive reply, else of the last reply). The example it keeps is the server's own words, with every
email address replaced by `<address>`: a reply often echoes the recipient, and addresses are
personal data that must never reach the report or the logs.

Robust to partial inputs: a result without evidence (or with attributes missing) is explained
from its substatus alone; `explain` never raises.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from mapper_emailverify.engine.providers import NAMES as PROVIDER_NAMES
from mapper_emailverify.taxonomy import STATUS_OF, Status, SubStatus

#: Every cause, with what it means (the README's table holds the same words).
CAUSES: dict[str, str] = {
    "timeout": "the mail hosts did not answer in time (a tarpit, a silent host, the deadline)",
    "greylisted": "still deferred after the in-run retries (greylisting, a recipient limit)",
    "blocked_at_connect": "refused at the greeting, EHLO/HELO or STARTTLS: our IP or host name",
    "blocked_at_mail": "refused at MAIL FROM: our envelope sender, its domain, SPF, our IP",
    "blocked_at_rcpt": "refused at RCPT for policy, reputation or rate, not about the mailbox",
    "blocked": "refused, at a stage the evidence does not show (e.g. an EmailVerify.io answer)",
    "provider_unverifiable": "a provider that accepts every recipient at RCPT: SMTP cannot tell",
    "dns_error": "the domain's DNS lookup failed (timeout, SERVFAIL)",
    "not_contacted": "the mail hosts have private or reserved addresses: not contacted",
    "smtp_unavailable": "port 25 is blocked from this host: no mail host could be dialled",
    "smtp_check_off": "smtp_check is off: no mailbox was probed",
    "smtputf8_unsupported": "a non-ASCII mailbox name at a server without SMTPUTF8",
    "connection_failed": "the mail hosts dropped the connection or broke the protocol",
    "full_for_now": "the mailbox is full for now (a 4xx over quota)",
    "no_email": "the record has no email address",
    "other": "anything else (an internal error included)",
}

_BACKEND = "`backend_by_provider: {{{provider}: emailverify}}` (the EmailVerify.io API)"
_PROXY = (
    "probe from an IP with clean reverse DNS (`socks_proxy`), with a `helo_hostname` and a "
    "`mail_from` whose domain resolves"
)
_RECHECK = "re-check later with the tap's `filter: unknown`"

#: What to do about each cause: one sentence, naming the settings. `{provider}` is the provider's
#: name; `{backend}` the setting that sends its addresses to the EmailVerify.io API.
ADVICE: dict[str, str] = {
    "timeout": f"Raise `smtp_timeout` or `verification_deadline`, or {_RECHECK}.",
    "greylisted": f"Raise `greylist_max_wait` so the run waits out the greylisting, or {_RECHECK}.",
    "blocked_at_connect": f"The server refused this host: {_PROXY}.",
    "blocked_at_mail": f"The server refused our sender: {_PROXY}.",
    "blocked_at_rcpt": (
        f"The server refused the probe, not the mailbox: {_PROXY}, or set {{backend}}."
    ),
    "blocked": f"{_PROXY[0].upper()}{_PROXY[1:]}, or set {{backend}}.",
    "provider_unverifiable": (
        "At {provider} every recipient is accepted at RCPT, so only an API can tell: set {backend}."
    ),
    "dns_error": (
        f"Check the resolver: set `dns_nameservers` to one that answers (and `dns_timeout`), "
        f"then {_RECHECK}."
    ),
    "not_contacted": (
        "Set `allow_private_mx: true` if these are your own internal mail hosts; otherwise the "
        "domain points its mail at an address nobody outside can reach."
    ),
    "smtp_unavailable": (
        "Outbound port 25 is blocked here: probe through `socks_proxy`, or use "
        "`backend: emailverify`."
    ),
    "smtp_check_off": "Turn `smtp_check` on (or use `backend: emailverify`) to probe mailboxes.",
    "smtputf8_unsupported": (
        "The server cannot be asked about a non-ASCII mailbox: set {backend} if these matter."
    ),
    "connection_failed": (
        f"Lower `max_connections_per_mx` if the server limits connections, and {_RECHECK}."
    ),
    "full_for_now": f"Nothing to change here: {_RECHECK} once the owner has made room.",
    "no_email": "Nothing to verify: check `email_field` / `stream_email_fields`.",
    "other": "Run `emailverify-check` on one of these addresses to see the whole trail.",
}

#: Where the conversation was refused: the command of the reply that refused.
_CONNECT_STAGES = frozenset({"connect", "banner", "ehlo", "helo", "starttls"})

_BY_SUBSTATUS: dict[str, str] = {
    SubStatus.SMTP_TIMEOUT: "timeout",
    SubStatus.GREYLISTED: "greylisted",
    SubStatus.PROVIDER_UNVERIFIABLE: "provider_unverifiable",
    SubStatus.DNS_ERROR: "dns_error",
    SubStatus.MX_NOT_PUBLIC: "not_contacted",
    SubStatus.SMTP_UNAVAILABLE: "smtp_unavailable",
    SubStatus.SMTP_CONNECTION_FAILED: "connection_failed",
    SubStatus.MAILBOX_FULL: "full_for_now",
    SubStatus.NO_EMAIL: "no_email",
}
_UNKNOWN_SUBSTATUSES = frozenset(
    str(sub) for sub, status in STATUS_OF.items() if status is Status.UNKNOWN
)

#: `str(SmtpReply)`: "host: COMMAND -> code text" (the host holds no blank, an IPv6 one no ": ").
_REPLY = re.compile(r"^\S*: (?P<command>.+?) -> (?P<code>\d{3})\b ?(?P<text>.*)$", re.DOTALL)
_PROVIDER_RULE = re.compile(r"provider rule: (\w+)")
_PROVIDER_NAME = re.compile(r"^[a-z0-9_]{1,40}$")

_ATS = "@\uff20\ufe6b"  # @, FULLWIDTH and SMALL COMMERCIAL AT (NFKC folds both to @)
#: An address in angle brackets, whatever it holds: "<john@example.com>", "<@relay:x@y>".
_BRACKETED = re.compile(rf"<[^<>\s]*[{_ATS}][^<>\s]*>")
#: A quoted local part: "\"john doe\"@example.com".
_QUOTED = re.compile(rf'"[^"]*"[{_ATS}][^\s<>()\[\]",;]*')
#: Any other run of characters around an at sign (IDN and punctuation included): never kept.
_BARE = re.compile(rf"[^\s<>()\[\]\"',;{_ATS}]*[{_ATS}][^\s<>()\[\]\"',;]*")
MAX_EXAMPLE = 160
REDACTED = "<address>"


@dataclass(frozen=True)
class Explanation:
    """Why one verdict is Unknown: `cause` (a `CAUSES` key), the `provider` ("other" for none),
    an `example` (the decisive reply, addresses redacted) and `advice` (what the user can do)."""

    cause: str
    provider: str
    example: str
    advice: str


def redact_addresses(text: str) -> str:
    """`text` with every email address (anything around an at sign) replaced by `<address>`."""
    text = _BRACKETED.sub(REDACTED, text)
    text = _QUOTED.sub(lambda m: _keep_trailing_dots(m.group(), REDACTED), text)
    return _BARE.sub(lambda m: _keep_trailing_dots(m.group(), REDACTED), text)


def _keep_trailing_dots(found: str, replacement: str) -> str:
    """Sendmail writes "john@example.com... User unknown": the dots belong to the sentence."""
    return replacement + found[len(found.rstrip(".:")) :]


def clean_example(text: str) -> str:
    """One line fit for a report: control and format characters out, addresses redacted, blanks
    folded, at most `MAX_EXAMPLE` characters (redacted before cut, never the other way round)."""
    text = "".join(
        " " if char.isspace() else char
        for char in text
        if char.isspace() or not unicodedata.category(char).startswith("C")
    )
    text = " ".join(redact_addresses(text).split())
    if len(text) > MAX_EXAMPLE:
        text = text[: MAX_EXAMPLE - 1].rstrip() + "…"
    return text


def advice_for(cause: str, provider: str) -> str:
    """The advice of `cause` for addresses at `provider` ("other": no provider the engine knows)."""
    known = provider in PROVIDER_NAMES
    backend = (
        _BACKEND.format(provider=provider)
        if known
        else "`backend: emailverify` (the EmailVerify.io API)"
    )
    template = ADVICE.get(cause, ADVICE["other"])
    if cause == "provider_unverifiable" and not known:
        provider, backend = "this provider", _BACKEND.format(provider="<provider>")
    return template.format(provider=provider, backend=backend)


def explain(result: object) -> Explanation | None:
    """Why `result` (an engine `Result`, or anything shaped like one) is Unknown; None when it is
    not an Unknown verdict."""
    if result is None:
        return None
    status = _text(getattr(result, "status", None))
    substatus = _text(getattr(result, "substatus", None))
    if status is not None and status != str(Status.UNKNOWN):
        return None
    if status is None and substatus not in _UNKNOWN_SUBSTATUSES:
        return None
    evidence = getattr(result, "evidence", None)
    decided_by = _text(getattr(evidence, "decided_by", None)) or ""
    decisive = _text(getattr(evidence, "decisive_reply", None))
    replies = getattr(evidence, "smtp_replies", None)
    replies = list(replies) if isinstance(replies, list | tuple) else []
    provider = _provider(evidence, decided_by)
    cause = _cause(substatus or "", decided_by, _stage(decisive, replies))
    example = _example(decisive, decided_by, substatus)
    return Explanation(cause, provider, example, advice_for(cause, provider))


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _provider(evidence: object, decided_by: str) -> str:
    name = _text(getattr(evidence, "provider", None))
    if name is None:  # the provider rule names it in its reason: "provider rule: yahoo accepts ..."
        match = _PROVIDER_RULE.search(decided_by)
        name = match.group(1) if match and match.group(1) in PROVIDER_NAMES else None
    if name is None or not _PROVIDER_NAME.match(name):
        return "other"
    return name


def _stage(decisive: str | None, replies: list[object]) -> str | None:
    """The command the server refused: that of the decisive reply, else of the last reply."""
    if decisive is not None:
        for reply in replies:
            if str(reply) == decisive:
                command = getattr(reply, "command", None)
                if command is not None:
                    return str(command)
        match = _REPLY.match(decisive)
        if match:
            return match.group("command")
    if replies:
        command = getattr(replies[-1], "command", None)
        return None if command is None else str(command)
    return None


def _cause(substatus: str, decided_by: str, stage: str | None) -> str:
    if substatus == SubStatus.SMTP_BLOCKED:
        where = (stage or "").strip().lower()
        if where in _CONNECT_STAGES:
            return "blocked_at_connect"
        if where.startswith("mail"):
            return "blocked_at_mail"
        if where.startswith("rcpt"):
            return "blocked_at_rcpt"
        return "blocked"
    if substatus == SubStatus.SMTP_UNAVAILABLE:
        if "smtp_check is off" in decided_by:
            return "smtp_check_off"
        if "SMTPUTF8" in decided_by:
            return "smtputf8_unsupported"
    return _BY_SUBSTATUS.get(substatus, "other")


def _example(decisive: str | None, decided_by: str, substatus: str | None) -> str:
    """The decisive reply as "code text", else the rule that decided, else the substatus."""
    if decisive:
        match = _REPLY.match(decisive)
        shown = f"{match.group('code')} {match.group('text')}" if match else decisive
    elif decided_by:
        shown = decided_by
    else:
        shown = f"{substatus or 'Unknown'} (no evidence recorded)"
    return clean_example(shown)
