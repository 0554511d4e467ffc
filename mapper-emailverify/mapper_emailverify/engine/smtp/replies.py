"""What an SMTP reply is about, read before what its code says.

A RCPT reply may be about the mailbox (it does not exist, is disabled, is full), about us (our
sender domain, our IP, our rate), about the message (its size, its recipients) or about nothing in
particular. Only a permanent (5xx) reply about the mailbox can make an address Invalid. The rules
run in this order, the first that matches decides, and its name goes into the evidence:

1. an accepting reply, or a server saying the account receives mail too fast (it exists);
2. a refusal of our *sender* (X.1.7/X.1.8, SPF, DMARC, "Sender address rejected"), whatever else
   the reply contains: a sender-verification failure quotes the other server's "User unknown";
   and a refusal to relay (the host is not the mailbox's, whatever it says about the address);
3. mailbox phrases: the account is disabled / frozen / blocked, the mailbox does not exist, the
   mailbox is over quota (Microsoft's "Recipient address rejected: Access denied" included);
4. Postfix's "Recipient address rejected: <reason>" with a reason that is not about the mailbox
   (greylisted, policy, internal error) is never read by its code;
5. rate and volume limits, then replies about the message (size, too many recipients);
6. policy and reputation: X.7.x, block lists, relaying, reverse DNS, spam;
7. enhanced codes about the mailbox (X.1.1, X.1.10, X.1.6, X.1.3, X.2.1, X.2.2) and 551;
   X.1.0 alone is no evidence; generic codes (X.0.0, X.3.0, X.5.0) leave it to the text;
8. weaker not-found wording under a generic code ("mailbox unavailable");
9. anything else: a permanent refusal that says nothing about the mailbox, or a deferral.

The phrase lists come from real replies; `mapper-emailverify/tests/data/real_replies/` holds the
lines they were checked against, with their sources.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from mapper_emailverify.taxonomy import STATUS_OF, TEMPORARILY_FULL, Status, SubStatus

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
#: qmail and vpopmail put the enhanced code at the end: "... by that name. (#5.1.1)".
_HASH_ENHANCED = re.compile(r"\(#([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")


class Outcome(StrEnum):
    """What a RCPT reply says about the mailbox (or about us)."""

    ACCEPTED = "accepted"
    NOT_FOUND = "not_found"
    BAD_ADDRESS = "bad_address"
    DISABLED = "disabled"
    FULL = "full"
    FULL_TEMPORARY = "full_temporary"
    BLOCKED = "blocked"  # our IP, host name or connection: reputation, block lists, relaying
    SENDER = "sender"  # our envelope sender: its domain, SPF, DMARC, verification
    RATE = "rate"  # our rate or volume
    MESSAGE = "message"  # the message: its size, content or number of recipients
    DEFERRED = "deferred"
    TOO_MANY_RECIPIENTS = "too_many_recipients"
    REFUSED = "refused"  # permanent, but says nothing about the mailbox
    UNAVAILABLE = "unavailable"  # the server will not talk now (a busy greeting)
    PROTOCOL = "protocol"  # not an answer this command can have (a 3xx to RCPT): a broken server


#: Refusals of our side of the conversation: evidence about the probe's setup, not the mailbox.
ABOUT_US = frozenset({Outcome.BLOCKED, Outcome.SENDER, Outcome.RATE})


def _verdict(substatus: SubStatus) -> tuple[Status, SubStatus]:
    return STATUS_OF[substatus], substatus


#: The verdict each refusal stands for (ACCEPTED is decided by the prober: catch-all, role).
#: A recipient limit that persists after reconnecting is a deferral like any other 4xx.
VERDICT_OF: dict[Outcome, tuple[Status, SubStatus]] = {
    Outcome.NOT_FOUND: _verdict(SubStatus.MAILBOX_NOT_FOUND),
    Outcome.BAD_ADDRESS: _verdict(SubStatus.INVALID_SYNTAX),
    Outcome.DISABLED: _verdict(SubStatus.MAILBOX_DISABLED),
    Outcome.FULL: _verdict(SubStatus.MAILBOX_FULL),
    Outcome.FULL_TEMPORARY: TEMPORARILY_FULL,  # Unknown/mailbox_full, see taxonomy.TEMPORARILY_FULL
    Outcome.BLOCKED: _verdict(SubStatus.SMTP_BLOCKED),
    Outcome.SENDER: _verdict(SubStatus.SMTP_BLOCKED),
    Outcome.RATE: _verdict(SubStatus.SMTP_BLOCKED),
    Outcome.MESSAGE: _verdict(SubStatus.SMTP_BLOCKED),
    Outcome.DEFERRED: _verdict(SubStatus.GREYLISTED),
    Outcome.TOO_MANY_RECIPIENTS: _verdict(SubStatus.GREYLISTED),
    Outcome.REFUSED: _verdict(SubStatus.SMTP_BLOCKED),
    Outcome.UNAVAILABLE: _verdict(SubStatus.SMTP_CONNECTION_FAILED),
    Outcome.PROTOCOL: _verdict(SubStatus.SMTP_CONNECTION_FAILED),
}

# -- phrases -------------------------------------------------------------------------------------
# Lower-case substrings; each list is what a real server says when the reply is about that subject.

#: Gmail and others: the account exists but is receiving mail faster than it accepts.
_EXISTS_BUT_BUSY = ("receiving mail at a rate that", "receiving mail too quickly")

_SENDER = (
    "sender address rejected",
    "sender address is",
    "sender rejected",
    "sender verify",
    "sender verification",
    "verify sender",
    "unverified sender",
    "sender domain",
    "sender's domain",
    "senders domain",
    "domain of sender",
    "unroutable sender",
    "unrouteable sender",
    "bad sender",
    "invalid sender",
    "sender is not",
    "sender not",
    "sender unknown",
    "unknown sender",
    "sender denied",
    "sender blocked",
    "sender was rejected",
    "mail from",
    "mail-from",
    "envelope from",
    "envelope sender",
    "envelope-from",
    "return-path",
    "return path",
    "reverse-path",
    "spf",
    "dmarc",
    "dkim",
    "not authenticated",
    "unauthenticated",
    "authentication checks",
)

_DISABLED = (
    "(disabled)",
    "account disabled",
    "account is disabled",
    "account has been disabled",
    "disabled account",
    "disabled recipient",
    "disabled user",
    "disableduser",
    "user disabled",
    "mailbox disabled",
    "mailbox is disabled",
    "mailbox has been disabled",
    "address is disabled",
    "is disabled",
    "mailbox is frozen",
    "account is frozen",
    "account frozen",
    "recipient account is blocked",
    "account is blocked",
    "account has been blocked",
    "account is locked",
    "account locked",
    "account suspended",
    "account is suspended",
    "account has been suspended",
    "mailbox suspended",
    "suspended account",
    "is suspended",
    "deactivated",
    "mailbox is inactive",
    "inactive mailbox",
    "inactive account",
    "account is inactive",
    "user is inactive",
    "inactive user",
    "account inactive",
    "account has been closed",
    "account closed",
    "account is closed",
    "mailbox closed",
    "no longer active",
    "discontinued",
    "expired account",
    "account expired",
    "account has expired",
    "user is terminated",
    "account terminated",
    "is now disabled",
    "is no longer valid",
    "inactive",
    "recipient suspend",
    "is currently suspended",
    "account isblocked",
    "compte du destinataire est bloque",
    "archivee",
)

_NOT_FOUND = (
    "user unknown",
    "unknown user",
    "user not found",
    "user does not exist",
    "user doesn't exist",
    "user doesn't have",
    "doesn't have a",
    "does not have an account",
    "no such user",
    "no such person",
    "no such recipient",
    "no such mailbox",
    "no such address",
    "no such account",
    "no mailbox here",
    "no mailbox by that name",
    "mailbox not found",
    "mailbox does not exist",
    "mailbox doesn't exist",
    "mailbox unknown",
    "mailbox is unknown",
    "unknown mailbox",
    "recipient unknown",
    "unknown recipient",
    "recipient not found",
    "recipient does not exist",
    "recipient doesn't exist",
    "recipientnotfound",
    "recipnotfound",
    "address unknown",
    "unknown address",
    "addressee unknown",
    "address not found",
    "address does not exist",
    "address doesn't exist",
    "account does not exist",
    "account doesn't exist",
    "account not found",
    "account that you tried to reach does not exist",
    "does not exist",
    "doesn't exist",
    "not exist",
    "invalid recipient",
    "recipient invalid",
    "invalid mailbox",
    "not a valid mailbox",
    "not a valid recipient",
    "unknown local part",
    "unknown or illegal alias",
    "not our user",
    "not our customer",
    "not a known user",
    "not a known mailbox",
    "not a valid user",
    "not in recipient list",
    "invalid-recipient",
    "marked as invalid",
    "address invalid",
    "invalid address",
    "host unknown",
    "does no exist",
    "cuda_nsu",
    "nosuchuser",
    "utilisateur inconnu",
    "destinataire inconnu",
    "unbekannt",
    "no existe",
    "inesistente",
    "sconosciuto",
)

_FULL = (
    "over quota",
    "overquota",
    "over the quota",
    "quota exceeded",
    "quota exceed",
    "exceeded quota",
    "exceeds quota",
    "storage quota",
    "quota full",
    "mailbox full",
    "mailbox is full",
    "mailbox has exceeded",
    "exceeded storage",
    "exceeded its storage",
    "storage allocation",
    "out of storage",
    "mailbox size limit",
    "mailbox size exceeded",
    "user is over",
    "inbox is full",
    "quota violation",
    "too many messages on the server",
    "exhausted allowed storage",
    "storage space",
    "pleine",
)

_BAD_ADDRESS = (
    "bad address syntax",
    "not a valid rfc",
    "fully-qualified address",
    "mailbox name not allowed",
    "invalid address syntax",
    "address syntax",
)

#: Phrases with the address or a name inside them: "User <benny> unknown", "Local User [x] not
#: found", "Domain example.org does not accept mail" (a null MX).
_NOT_FOUND_PATTERNS = (
    re.compile(r"\buser \S+ (?:unknown|not found)"),
    re.compile(r"\bdomain \S+ does not accept mail"),
    re.compile(r"exceed\w* (?:their |its |the )?quota"),
)

#: Explicit policy wording: with a policy code (X.7.x) it outweighs a mailbox phrase.
_POLICY_VETO = ("policy", "preferences", "not authorized", "not permitted")

_MAILBOX_VERDICTS = frozenset(
    {Outcome.NOT_FOUND, Outcome.DISABLED, Outcome.FULL, Outcome.BAD_ADDRESS}
)
#: Relaying refused: we asked a host that is not the mailbox's; nothing about the mailbox.
_RELAY = (
    "relay access denied",
    "relaying denied",
    "relay denied",
    "relay not permitted",
    "relaying not allowed",
    "not permitted to relay",
    "unable to relay",
    "we do not relay",
    "relaying to",
    "allowed rcpthosts",
)

#: Postfix's address verification quotes the next hop: "... said: 550 5.1.1 <x>: ...".
_NESTED = re.compile(r"said: ([245]\d\d)[ -](.*)$")

#: Postfix prefixes every recipient restriction with this; only the reason after it counts.
_POSTFIX_RECIPIENT = "recipient address rejected:"

_RATE = (
    "rate limit",
    "rate-limit",
    "ratelimit",
    "rate limited",
    "too many messages",
    "too many mails",
    "too many emails",
    "too many connections",
    "too many concurrent",
    "too many recipients this hour",
    "too many recipients received this hour",
    "recipients this hour",
    "per hour",
    "per day",
    "frequency",
    "too fast",
    "too quickly",
    "throttl",
    "unusual rate",
    "sending rate",
    "exceeded the rate",
    "unexpected volume",
    "high volume",
    "volume of",
    "slow down",
)

_MESSAGE = (
    "message size",
    "size limit",
    "message is too large",
    "message too large",
    "message too big",
    "message is too big",
    "too large",
    "too big",
    "exceeds size",
    "exceeded the size",
    "exceeds the maximum",
    "maximum message size",
    "message length",
    "message content",
    "content rejected",
    "attachment",
)

_TOO_MANY_RECIPIENTS = (
    "too many recipients",
    "too many rcpt",
    "recipients belong to multiple regions",
    "recipient limit",
    "too many invalid recipients",
    "maximum number of recipients",
)

_BLOCK = (
    "client host rejected",
    "blacklist",
    "black list",
    "blocklist",
    "block list",
    "blocked",
    "listed",
    "spamhaus",
    "barracuda",
    "abusix",
    "spamcop",
    "sorbs",
    "dnsbl",
    "rbl",
    "reputation",
    "sbrs",
    "refused by proofpoint",
    "banned",
    "s3150",
    "s3140",
    "weren't sent",
    "not yet authorized",
    "administratively denied",
    "connection rejected",
    "relay access denied",
    "relaying denied",
    "relay denied",
    "relay not permitted",
    "relaying not allowed",
    "not permitted to relay",
    "unable to relay",
    "we do not relay",
    "spam",
    "policy",
    "preferences",  # "rejected due to recipient preferences": the mailbox exists and filters
    "reverse dns",
    "reverse hostname",
    "ptr record",
    "rdns",
    "helo",
    "ehlo",
    "allowed rcpthosts",
    "authentication required",
    "must issue a starttls",
    "access denied",
    "not allowed",
    "prohibited",
    "your ip",
    "your host",
    "your server",
    "your network",
)

_GREYLIST = (
    "greylist",
    "graylist",
    "grey-list",
    "gray-list",
    "try again later",
    "try later",
    "try again",
    "temporarily deferred",
    "deferred",
    "temporar",
)

#: The RFC 5321 default text of 550/450 and similar: a hint, not proof, that the mailbox is missing.
_WEAK_NOT_FOUND = (
    "mailbox unavailable",
    "mailbox is unavailable",
    "unrouteable address",
    "unroutable address",
    "address rejected",
    "invalid address",
    "recipient rejected",
    "undeliverable",
    "address error",
    "address is not handled",
    "verify address failed",
    "unable to verify user",
)


# -- the reply -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """A complete SMTP reply (all lines of a multi-line reply)."""

    code: int
    lines: tuple[str, ...] = ("",)

    @property
    def text(self) -> str:
        return " ".join(line.strip() for line in self.lines).strip()

    @property
    def enhanced(self) -> str | None:
        """The enhanced status code (RFC 3463) when the reply starts with one of its class."""
        match = _ENHANCED.match(self.lines[0] if self.lines else "")
        if not match or match.group(1) != str(self.code)[0]:
            return None
        return ".".join(match.groups())

    @property
    def positive(self) -> bool:
        """2xx: only the DATA command may be answered 3xx, and a probe never sends it."""
        return 200 <= self.code < 300


@dataclass(frozen=True)
class Reading:
    """What a reply was read to say, and the rule that read it (for the evidence trail)."""

    outcome: Outcome
    rule: str  # what decided, with the words or code it saw
    family: str = ""  # which of the numbered rules of the module docstring decided

    @property
    def about_us(self) -> bool:
        return self.outcome in ABOUT_US


@dataclass(frozen=True)
class _View:
    code: int
    subject: int  # -1 when the reply has no enhanced code
    detail: int
    text: str  # lower-case, whitespace folded

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    @property
    def enhanced(self) -> str:
        return f"X.{self.subject}.{self.detail}" if self.subject >= 0 else "no enhanced code"


def _view(reply: Reply) -> _View:
    text = " ".join(reply.text.lower().split())
    enhanced = reply.enhanced
    if enhanced is None:
        hashed = _HASH_ENHANCED.search(text)
        if hashed and hashed.group(1) == str(reply.code)[0]:
            enhanced = ".".join(hashed.groups())
    if enhanced is None:
        return _View(reply.code, -1, -1, text)
    _, subject, detail = (int(part) for part in enhanced.split("."))
    return _View(reply.code, subject, detail, text)


def _found(text: str, phrases: tuple[str, ...]) -> str | None:
    for phrase in phrases:
        if phrase in text:
            return phrase
    return None


# -- RCPT ----------------------------------------------------------------------------------------


def classify_rcpt(reply: Reply) -> Outcome:
    """What a RCPT TO reply says (see `read_rcpt` for the rule behind it)."""
    return read_rcpt(reply).outcome


def read_rcpt(reply: Reply) -> Reading:
    """Read a RCPT TO reply: the outcome and the name of the rule that decided it."""
    if 200 <= reply.code < 300:  # 251 forwards; 252 "cannot verify" accepts without proof
        return Reading(Outcome.ACCEPTED, f"{reply.code}: accepted", "1 accepted")
    if not 400 <= reply.code < 600:  # 3xx (or anything the session let through): no answer
        return Reading(Outcome.PROTOCOL, f"{reply.code} is not an answer to RCPT", "protocol error")
    view = _view(reply)
    for family, rule in _RCPT_RULES:
        reading = rule(view)
        if reading is not None:
            return replace(reading, family=family)
    raise AssertionError("the last rule always decides")  # pragma: no cover


def _exists_but_busy(v: _View) -> Reading | None:
    phrase = _found(v.text, _EXISTS_BUT_BUSY)
    if phrase:
        return Reading(Outcome.ACCEPTED, f"the account exists, receiving too fast ('{phrase}')")
    return None


def _about_sender(v: _View) -> Reading | None:
    if v.subject == 1 and v.detail in (7, 8):
        return Reading(Outcome.SENDER, f"about our sender ({v.enhanced})")
    if v.subject == 7 and v.detail in (23, 24, 25, 26, 27):
        return Reading(Outcome.SENDER, f"sender authentication ({v.enhanced})")
    phrase = _found(v.text, _SENDER)
    if phrase:
        return Reading(Outcome.SENDER, f"about our sender ('{phrase}')")
    return None


def _relaying(v: _View) -> Reading | None:
    phrase = _found(v.text, _RELAY)
    if phrase:
        return Reading(Outcome.BLOCKED, f"relaying refused ('{phrase}'): not the mailbox's host")
    return None


def _mailbox_phrases(v: _View) -> Reading | None:
    if "5.4.1" in v.text and "recipient address rejected: access denied" in v.text:
        # Microsoft 365 directory-based edge blocking: the recipient is not in the directory.
        outcome = Outcome.NOT_FOUND if v.permanent else Outcome.DEFERRED
        return Reading(outcome, "not in the recipient directory (5.4.1 'access denied')")
    if v.permanent and ((v.subject, v.detail) == (1, 3) or _found(v.text, _BAD_ADDRESS)):
        return Reading(Outcome.BAD_ADDRESS, f"bad recipient address ({v.enhanced})")
    for pattern in _NOT_FOUND_PATTERNS:
        match = pattern.search(v.text)
        if match:
            outcome, what = (
                (Outcome.FULL, "full")
                if "quota" in match.group()
                else (Outcome.NOT_FOUND, "not found")
            )
            outcome = outcome if v.permanent else Outcome.DEFERRED
            return Reading(outcome, f"mailbox {what} ('{match.group()[:40]}'), {v.code}")
    for phrases, permanent, temporary, what in (
        (_DISABLED, Outcome.DISABLED, Outcome.DEFERRED, "disabled"),
        (_NOT_FOUND, Outcome.NOT_FOUND, Outcome.DEFERRED, "not found"),
        (_FULL, Outcome.FULL, Outcome.FULL_TEMPORARY, "full"),
    ):
        phrase = _found(v.text, phrases)
        if not phrase:
            continue
        veto = _found(v.text, _POLICY_VETO) if v.subject == 7 else None
        if veto:
            return Reading(Outcome.BLOCKED, f"explicit policy ('{veto}') over '{phrase}'")
        outcome = permanent if v.permanent else temporary
        return Reading(outcome, f"mailbox {what} ('{phrase}'), {v.code}")
    return None


def _postfix_reason(v: _View) -> Reading | None:
    """Postfix's recipient restrictions: the reason decides, never the code in front of it."""
    at = v.text.find(_POSTFIX_RECIPIENT)
    if at < 0:
        return None
    reason = _View(v.code, -1, -1, v.text[at + len(_POSTFIX_RECIPIENT) :].strip())
    nested = _NESTED.search(reason.text)
    if v.permanent and reason.text.startswith("undeliverable address") and nested:
        # reject_unverified_recipient: Postfix asked the next hop, which said the mailbox is gone.
        said = Reply(int(nested.group(1)), (nested.group(2),))
        inner = read_rcpt(said)
        if inner.outcome not in _MAILBOX_VERDICTS:
            inner = _codes(_view(said)) or inner
        return Reading(inner.outcome, f"recipient verified undeliverable: {inner.rule}")
    for rule in (_rate_or_message, _policy, _greylisted):
        reading = rule(reason)
        if reading is not None:
            return Reading(reading.outcome, f"recipient rule: {reading.rule}")
    shown = reason.text[:40]
    if not v.permanent:
        return Reading(Outcome.DEFERRED, f"recipient rule, not about the mailbox ('{shown}')")
    return Reading(Outcome.REFUSED, f"recipient rule, not about the mailbox ('{shown}')")


def _greylisted(v: _View) -> Reading | None:
    phrase = _found(v.text, _GREYLIST)
    if phrase and not v.permanent:
        return Reading(Outcome.DEFERRED, f"deferred ('{phrase}')")
    return None


def _rate_or_message(v: _View) -> Reading | None:
    too_many = (v.subject == 5 and v.detail == 3) or _found(v.text, _TOO_MANY_RECIPIENTS)
    rate = _found(v.text, _RATE)
    if not v.permanent and too_many:
        return Reading(Outcome.TOO_MANY_RECIPIENTS, "too many recipients (a session limit)")
    if rate:
        if not v.permanent:
            return Reading(Outcome.DEFERRED, f"rate or volume limit, for now ('{rate}')")
        return Reading(Outcome.RATE, f"rate or volume limit ('{rate}')")
    if too_many:
        return Reading(Outcome.MESSAGE, "too many recipients")
    if (v.subject, v.detail) in ((2, 3), (3, 4)) or v.subject == 6:
        return Reading(Outcome.MESSAGE, f"about the message ({v.enhanced})")
    phrase = _found(v.text, _MESSAGE)
    if phrase:
        return Reading(Outcome.MESSAGE, f"about the message ('{phrase}')")
    return None


def _policy(v: _View) -> Reading | None:
    phrase = _found(v.text, _BLOCK)
    if v.subject != 7 and not phrase:
        return None
    why = f"'{phrase}'" if phrase else v.enhanced
    if not v.permanent and _found(v.text, _GREYLIST):
        return Reading(Outcome.DEFERRED, f"deferred by policy ({why})")
    return Reading(Outcome.BLOCKED, f"policy or reputation ({why})")


def _codes(v: _View) -> Reading | None:
    if not v.permanent:
        return None
    code = (v.subject, v.detail)
    if code in ((1, 1), (1, 10)):
        return Reading(Outcome.NOT_FOUND, f"no such mailbox ({v.enhanced})")
    if code == (1, 6):
        return Reading(Outcome.NOT_FOUND, f"mailbox has moved ({v.enhanced})")
    if code == (1, 3):
        return Reading(Outcome.BAD_ADDRESS, f"bad mailbox address syntax ({v.enhanced})")
    if code == (2, 1):
        return Reading(Outcome.DISABLED, f"mailbox disabled ({v.enhanced})")
    if code == (2, 2):
        return Reading(Outcome.FULL, f"mailbox full ({v.enhanced})")
    if v.code == 551 and v.subject in (-1, 0, 1):
        return Reading(Outcome.NOT_FOUND, "551: user not local")
    return None


def _weak_not_found(v: _View) -> Reading | None:
    if not v.permanent or v.subject not in (-1, 0, 5) or _found(v.text, _GREYLIST):
        return None
    phrase = _found(v.text, _WEAK_NOT_FOUND)
    if phrase:
        return Reading(Outcome.NOT_FOUND, f"not-found wording under a generic code ('{phrase}')")
    return None


def _fallback(v: _View) -> Reading:
    if v.permanent:
        return Reading(Outcome.REFUSED, f"{v.code} {v.enhanced}: nothing about the mailbox")
    if v.subject == 2 and v.detail == 2:
        return Reading(Outcome.FULL_TEMPORARY, f"mailbox full for now ({v.enhanced})")
    if v.code == 452 and v.subject == -1:
        return Reading(Outcome.TOO_MANY_RECIPIENTS, "452: too many recipients (a session limit)")
    return Reading(Outcome.DEFERRED, f"{v.code}: deferred")


#: The rules in order, each with the name the evidence and the README's table use.
_RCPT_RULES: tuple[tuple[str, Callable[[_View], Reading | None]], ...] = (
    ("1 exists, busy", _exists_but_busy),
    ("2 about our sender", _about_sender),
    ("2 relaying refused", _relaying),
    ("3 mailbox phrase", _mailbox_phrases),
    ("4 Postfix recipient rule", _postfix_reason),
    ("5 rate, message", _rate_or_message),
    ("6 policy, reputation", _policy),
    ("7 mailbox code", _codes),
    ("8 weak not-found wording", _weak_not_found),
    ("9 nothing about the mailbox", _fallback),
)


# -- banner, HELO, MAIL FROM ---------------------------------------------------------------------


def classify_refusal(reply: Reply, stage: str = "banner") -> SubStatus:
    """A banner, EHLO or MAIL FROM refusal: about us or the server, never about the mailbox."""
    return VERDICT_OF[read_refusal(reply, stage).outcome][1]


def read_refusal(reply: Reply, stage: str = "banner") -> Reading:
    """Read a refusal before any recipient was asked.

    Refusals of our sender, IP or rate are about us; a 4xx to MAIL FROM that talks about
    greylisting is greylisting; any other 4xx (a busy greeting, "421 too many connections") is a
    connection problem; a permanent refusal without those words refuses without saying why.
    """
    if not 400 <= reply.code < 600:
        return Reading(
            Outcome.PROTOCOL, f"{stage}: {reply.code} is not an answer here", "protocol error"
        )
    view = _view(reply)
    mail = stage.upper().startswith("MAIL")
    sender = _about_sender(view)
    if sender is not None and (mail or view.permanent):
        return Reading(sender.outcome, f"{stage}: {sender.rule}", "about our sender")
    block = _found(view.text, _BLOCK)
    if not view.permanent:
        if mail and _found(view.text, _GREYLIST):
            return Reading(Outcome.DEFERRED, f"{stage}: greylisted", "greylisted")
        if block and not _found(view.text, _GREYLIST):
            return Reading(
                Outcome.BLOCKED, f"{stage}: refused for now ('{block}')", "policy, reputation"
            )
        return Reading(Outcome.UNAVAILABLE, f"{stage}: {reply.code}, not now", "not now")
    rate = _found(view.text, _RATE)
    if rate:
        return Reading(Outcome.RATE, f"{stage}: rate or volume limit ('{rate}')", "rate")
    if block or view.subject == 7:
        why = f"'{block}'" if block else view.enhanced
        return Reading(
            Outcome.BLOCKED, f"{stage}: policy or reputation ({why})", "policy, reputation"
        )
    return Reading(Outcome.REFUSED, f"{stage}: {reply.code} without a reason", "no reason given")


# -- greylisting ---------------------------------------------------------------------------------

#: "try again in 5 minutes", "retry after 300 seconds", "wait 60s", "please try again in 4 min".
_DELAY = re.compile(
    r"(?:again|retry|after|wait|for|in)\D{0,12}?(\d{1,6}(?:\.\d+)?)\s*"
    r"(seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h)\b"
)
_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0}
#: A named delay longer than this is no greylisting window (a 24-hour block, a typo): ignored.
_LONGEST_NAMED_DELAY = 6 * 3600.0


def named_delay(reply: Reply) -> float | None:
    """The delay a deferral names ("try again in 5 minutes"), in seconds, or None.

    customeros/mailsherpa reads the same hints; a server that names no delay leaves the choice to
    `greylist_retry_after`.
    """
    if not 400 <= reply.code < 500:
        return None
    match = _DELAY.search(" ".join(reply.text.lower().split()))
    if match is None:
        return None
    seconds = float(match.group(1)) * _UNIT[match.group(2)[0]]
    return seconds if 0 < seconds <= _LONGEST_NAMED_DELAY else None


# -- rate and reputation deferrals -----------------------------------------------------------

#: Enhanced codes of temporary refusals that mean "slow down": Google's 4.7.28 (unusual rate),
#: Microsoft's 4.7.500 (server busy) and 4.7.650 (IP reputation, rate limited).
_RATE_CODES = frozenset({"4.7.28", "4.7.500", "4.7.650"})
_BUSY = ("server busy", "try again later, closing connection", "too many connections")


def rate_limited(reply: Reply) -> bool:
    """A temporary refusal asking us to slow down (`421 4.7.0 ... try again later`, `421 4.7.28
    ... unusual rate`, `451 4.7.500 Server busy`): the host is asked again later, more slowly."""
    if not 400 <= reply.code < 500:
        return False
    view = _view(reply)
    if f"4.{view.subject}.{view.detail}" in _RATE_CODES:
        return True
    if _found(view.text, _RATE) or _found(view.text, _BUSY):
        return True
    return reply.code == 421 and (view.subject, view.detail) == (7, 0)
