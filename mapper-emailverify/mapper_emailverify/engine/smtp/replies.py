"""SMTP reply classification: reply code and enhanced status code first, text second.

Policy and reputation wording is checked before any "mailbox not found" wording, and only a
permanent (5xx) reply can make an address Invalid: a block, a deferral or an unexplained refusal is
Unknown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from mapper_emailverify.taxonomy import STATUS_OF, TEMPORARILY_FULL, Status, SubStatus

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})(?!\d)")


class Outcome(StrEnum):
    """What a RCPT reply says about the mailbox (or about us)."""

    ACCEPTED = "accepted"
    NOT_FOUND = "not_found"
    BAD_ADDRESS = "bad_address"
    DISABLED = "disabled"
    FULL = "full"
    FULL_TEMPORARY = "full_temporary"
    BLOCKED = "blocked"
    DEFERRED = "deferred"
    TOO_MANY_RECIPIENTS = "too_many_recipients"
    REFUSED = "refused"  # permanent, but says nothing about the mailbox


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
    Outcome.DEFERRED: _verdict(SubStatus.GREYLISTED),
    Outcome.TOO_MANY_RECIPIENTS: _verdict(SubStatus.GREYLISTED),
    Outcome.REFUSED: _verdict(SubStatus.SMTP_BLOCKED),
}

# Policy / reputation: checked first so that a blocked probe is never read as a missing mailbox.
_BLOCK_WORDS = (
    "client host rejected",
    "blacklist",
    "black list",
    "blocklist",
    "block list",
    "blocked",
    "spamhaus",
    "barracuda",
    "abusix",
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
    "relay not permitted",
    "relaying not allowed",
    "not permitted to relay",
    "unable to relay",
    "5.7.606",
    "spam",
    "policy",
    "reverse dns",
    "reverse hostname",
    "ptr record",
    "rdns",
    "helo command rejected",
    "sender address rejected",
    "allowed rcpthosts",
    "authentication required",
    "must issue a starttls",
)
# Microsoft 365 directory-based edge blocking says "Access denied" for a recipient that does not
# exist.
_DBEB = ("recipient address rejected: access denied",)
_GREYLIST_WORDS = (
    "greylist",
    "graylist",
    "grey-list",
    "gray-list",
    "try again later",
    "try later",
    "temporarily deferred",
    "deferred",
)
_DISABLED_WORDS = (
    "disabled",
    "discontinued",
    "inactive",
    "suspended",
    "deactivated",
    "disableduser",
    "account has been closed",
    "no longer active",
)
_FULL_WORDS = (
    "mailbox full",
    "mailbox is full",
    "over quota",
    "overquota",
    "quota exceeded",
    "quota exceed",
    "exceeded storage",
    "insufficient storage",
    "out of storage",
    "too many messages",
    "mailbox size limit",
)
_NOT_FOUND_WORDS = (
    "user unknown",
    "unknown user",
    "no such user",
    "does not exist",
    "doesn't exist",
    "not exist",
    "mailbox not found",
    "mailbox unavailable",
    "mailbox is unavailable",
    "unknown recipient",
    "recipient unknown",
    "recipient not found",
    "no such recipient",
    "recipient rejected",
    "invalid recipient",
    "recipient invalid",
    "invalid mailbox",
    "no mailbox",
    "no such mailbox",
    "not a valid mailbox",
    "unrouteable",
    "unroutable",
    "address rejected",
    "invalid address",
    "unknown local part",
    "no longer available",
    "could not be found",
    "no such person",
    "address error",
    "address is not handled",
    "verify address failed",
    "unable to verify user",
    "utilisateur inconnu",
    "nosuchuser",
    "undeliverable",
    "unknown or illegal alias",
)
_TOO_MANY_WORDS = (
    "too many recipients",
    "too many rcpt",
    "recipients belong to multiple regions",
    "recipient limit",
    "too many invalid recipients",
)
_EXISTS_BUT_BUSY = ("receiving mail at a rate that",)  # Gmail 4.2.1: the account exists


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
        match = _ENHANCED.match(self.lines[0] if self.lines else "")
        if not match or match.group(1) != str(self.code)[0]:
            return None
        return ".".join(match.groups())

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400


def _has(text: str, words: tuple[str, ...]) -> bool:
    return any(word in text for word in words)


def classify_rcpt(reply: Reply) -> Outcome:
    """Read a RCPT TO reply."""
    code, enhanced, text = reply.code, reply.enhanced, reply.text.lower()
    if code in (250, 251):
        return Outcome.ACCEPTED
    if 200 <= code < 400:  # 252 "cannot verify": accepted without saying the mailbox exists
        return Outcome.ACCEPTED
    _klass, subject, detail = (
        (int(x) for x in enhanced.split(".")) if enhanced else (code // 100, -1, -1)
    )
    dbeb = _has(text, _DBEB)
    if code >= 500:
        return _classify_permanent(code, subject, detail, text, dbeb)
    return _classify_transient(code, subject, detail, text)


def _classify_permanent(code: int, subject: int, detail: int, text: str, dbeb: bool) -> Outcome:
    if subject == 7 or (_has(text, _BLOCK_WORDS) and not dbeb):
        return Outcome.BLOCKED
    if subject == 1 and detail in (0, 1, 6, 10):
        return Outcome.NOT_FOUND
    if subject == 1 and detail == 3:
        return Outcome.BAD_ADDRESS
    if subject == 2 and detail == 1:
        return Outcome.DISABLED
    if subject == 2 and detail == 2:
        return Outcome.FULL
    if subject == 4 and detail == 1 and dbeb:
        return Outcome.NOT_FOUND
    if _has(text, _DISABLED_WORDS):
        return Outcome.DISABLED
    if _has(text, _FULL_WORDS) or (code == 552 and subject in (-1, 2, 3)):
        return Outcome.FULL
    if _has(text, _NOT_FOUND_WORDS) or dbeb:
        return Outcome.NOT_FOUND
    return Outcome.REFUSED


def _classify_transient(code: int, subject: int, detail: int, text: str) -> Outcome:
    if _has(text, _EXISTS_BUT_BUSY):
        return Outcome.ACCEPTED
    if subject == 7 or _has(text, _BLOCK_WORDS):
        return Outcome.DEFERRED if _has(text, _GREYLIST_WORDS) else Outcome.BLOCKED
    if (subject == 5 and detail == 3) or _has(text, _TOO_MANY_WORDS):
        return Outcome.TOO_MANY_RECIPIENTS
    if (subject == 2 and detail == 2) or _has(text, _FULL_WORDS):
        return Outcome.FULL_TEMPORARY
    if code == 452 and subject == -1:
        return Outcome.TOO_MANY_RECIPIENTS
    return Outcome.DEFERRED


def classify_refusal(reply: Reply, stage: str = "banner") -> SubStatus:
    """A banner, EHLO or MAIL FROM refusal: about us or the server, never about the mailbox.

    A 4xx greeting (421 "too many connections") is a connection problem; a 4xx to MAIL FROM that
    talks about greylisting is greylisting; permanent refusals and block wording are policy blocks.
    """
    text = reply.text.lower()
    if reply.code >= 500 or _has(text, _BLOCK_WORDS):
        return SubStatus.SMTP_BLOCKED
    if stage.upper().startswith("MAIL") and _has(text, _GREYLIST_WORDS):
        return SubStatus.GREYLISTED
    return SubStatus.SMTP_CONNECTION_FAILED
