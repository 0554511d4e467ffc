"""The RCPT reply classifier on real-world reply lines (reference 1.5 and 5.3-5.10).

Rows marked "Reacher" are lines Reacher's substring matcher gets wrong: it reads every `permanent:
5.7.1` as a missing mailbox and knows nothing of enhanced codes or 4xx "full" replies.
"""

from __future__ import annotations

import pytest
from mapper_emailverify.engine.smtp.replies import (
    VERDICT_OF,
    Outcome,
    Reply,
    classify_rcpt,
    classify_refusal,
)
from mapper_emailverify.taxonomy import Status, SubStatus


def reply(line: str) -> Reply:
    """Parse one textual reply, multi-line replies joined with '\\n'."""
    lines = line.split("\n")
    return Reply(int(lines[0][:3]), tuple(part[4:] for part in lines))


TABLE = [
    # accepted
    ("250 2.1.5 OK", Outcome.ACCEPTED),
    ("250 2.1.5 Recipient OK", Outcome.ACCEPTED),
    ("251 2.1.5 User not local; will forward to <x@elsewhere.example>", Outcome.ACCEPTED),
    # Gmail: the account exists but is receiving too fast (Reacher special-cases the text too)
    (
        "450 4.2.1 The user you are trying to contact is receiving mail at a rate that prevents "
        "additional messages from being delivered.",
        Outcome.ACCEPTED,
    ),
    # mailbox not found, by enhanced code and by wording
    (
        "550 5.1.1 <x@d.example>: Recipient address rejected: "
        "User unknown in virtual mailbox table",
        Outcome.NOT_FOUND,
    ),
    (
        "550-5.1.1 The email account that you tried to reach does not exist. Please try\n"
        "550-5.1.1 double-checking the recipient's email address for typos or\n"
        "550 5.1.1 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser",
        Outcome.NOT_FOUND,
    ),
    ("550 5.1.1 Recipient unknown", Outcome.NOT_FOUND),
    ("550 No such user here", Outcome.NOT_FOUND),
    ("550 Requested action not taken: mailbox unavailable", Outcome.NOT_FOUND),
    ("550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302)", Outcome.NOT_FOUND),
    ("553 5.1.6 Mailbox has moved", Outcome.NOT_FOUND),
    (
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
        Outcome.NOT_FOUND,
    ),
    ("511 sorry, no mailbox here by that name (#5.1.1 - chkuser)", Outcome.NOT_FOUND),
    ("550 Utilisateur inconnu", Outcome.NOT_FOUND),
    # Microsoft 365 directory-based edge blocking: "Access denied" that means "no such recipient"
    ("550 5.4.1 Recipient address rejected: Access denied. AS(201806281)", Outcome.NOT_FOUND),
    # disabled
    ("550 5.2.1 The email account that you tried to reach is disabled", Outcome.DISABLED),
    (
        "554 delivery error: dd This user doesn't have a yahoo.com account (disabled) "
        "- mta.yahoo.com",
        Outcome.DISABLED,
    ),
    ("550 Mailbox is inactive", Outcome.DISABLED),
    # full: permanent is Invalid, temporary is a deferral (Reacher reports both as "has_full_inbox")
    ("552 5.2.2 Mailbox full: user is over quota", Outcome.FULL),
    ("552 Requested mail action aborted: exceeded storage allocation", Outcome.FULL),
    (
        "452 4.2.2 The email account that you tried to reach is over quota. OverQuotaTemp",
        Outcome.FULL_TEMPORARY,
    ),
    # policy and reputation: Reacher classifies these 5.7.1 lines as invalid mailboxes
    (
        "550 5.7.1 Service unavailable; Client host [203.0.113.9] blocked using zen.spamhaus.org",
        Outcome.BLOCKED,
    ),
    (
        "550 5.7.1 Unfortunately, messages from [203.0.113.9] weren't sent. "
        "Please contact your Internet "
        "service provider since part of their network is on our block list (S3150).",
        Outcome.BLOCKED,
    ),
    ("554 5.7.1 <unknown[203.0.113.9]>: Client host rejected: Access denied", Outcome.BLOCKED),
    ("550 5.7.1 Recipient address rejected: user unknown (policy)", Outcome.BLOCKED),
    ("550 5.7.606 Access denied, banned sending IP [203.0.113.9]", Outcome.BLOCKED),
    (
        "554 Service unavailable; Client host [203.0.113.9] blocked using b.barracudacentral.org",
        Outcome.BLOCKED,
    ),
    ("550 Client host rejected: cannot find your reverse hostname, [203.0.113.9]", Outcome.BLOCKED),
    ("550 5.1.1 Recipient rejected: your IP is listed in a DNSBL", Outcome.BLOCKED),
    ("554 5.7.1 <x@d.example>: Relay access denied", Outcome.BLOCKED),
    ("553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)", Outcome.BLOCKED),
    # temporary: greylisting, busy, local errors
    ("451 4.7.1 Greylisted, please try again later", Outcome.DEFERRED),
    (
        "450 4.2.0 <x@d.example>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/",
        Outcome.DEFERRED,
    ),
    (
        "450 4.7.1 <x@d.example>: Recipient address rejected: Policy rejection not logged in",
        Outcome.BLOCKED,
    ),
    ("451 4.4.4 Temporary server error. Please try again later. PRX4", Outcome.DEFERRED),
    ("421 4.7.0 Too many concurrent connections, try again later", Outcome.DEFERRED),
    ("450 Requested mail action not taken: mailbox unavailable", Outcome.DEFERRED),
    (
        "421 4.7.0 [TSS04] Messages from 203.0.113.9 temporarily deferred "
        "due to unexpected volume or "
        "user complaints",
        Outcome.DEFERRED,
    ),
    ("451 Temporary local problem - please try later", Outcome.DEFERRED),
    # per-session recipient limits: reconnect and ask again
    ("452 4.5.3 Too many recipients", Outcome.TOO_MANY_RECIPIENTS),
    ("452 4.5.3 Recipients belong to multiple regions", Outcome.TOO_MANY_RECIPIENTS),
    ("452 Too many recipients received this hour", Outcome.TOO_MANY_RECIPIENTS),
    # permanent but silent about the mailbox: never Invalid
    ("550 Rejected", Outcome.REFUSED),
    ("554 Transaction failed", Outcome.REFUSED),
    ("550 5.4.4 Unable to route", Outcome.REFUSED),
    # a mailbox code with explicit policy wording is not evidence that the mailbox is missing
    ("550 5.1.1 Message rejected due to recipient preferences", Outcome.BLOCKED),
    # X.1.0 alone proves nothing; with not-found wording it does
    ("550 5.1.0 Address rejected", Outcome.REFUSED),
    ("550 5.1.0 <x@d.example>: User unknown", Outcome.NOT_FOUND),
    # a 552 is a full mailbox only with X.2.2 or quota wording
    ("552 5.3.4 Message size exceeds fixed limit", Outcome.MESSAGE),
    ("552 5.2.3 Your message exceeded Google's message size limits.", Outcome.MESSAGE),
    ("552 Requested mail action aborted", Outcome.REFUSED),
]


@pytest.mark.parametrize(("line", "expected"), TABLE, ids=[row[0][:60] for row in TABLE])
def test_rcpt_reply_table(line: str, expected: Outcome) -> None:
    assert classify_rcpt(reply(line)) is expected


@pytest.mark.parametrize(
    "line",
    [
        "550 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org",
        "554 5.7.1 Message rejected due to content restrictions",
        "550 5.7.1 Delivery not authorized, message refused",
        "450 4.7.1 Client host rejected: cannot find your hostname",
        "421 4.7.0 Too many concurrent connections, try again later",
        "451 4.7.1 Greylisted, please try again later",
        "452 4.2.2 Mailbox full",
        "550 Rejected",
    ],
)
def test_blocks_deferrals_and_silent_refusals_are_never_invalid(line: str) -> None:
    """The rule that beats Reacher: only a reply about the mailbox itself may make an address
    Invalid."""
    outcome = classify_rcpt(reply(line))
    assert outcome is not Outcome.ACCEPTED
    assert VERDICT_OF[outcome][0] is Status.UNKNOWN


def test_transient_full_mailbox_is_unknown_not_invalid() -> None:
    outcome = classify_rcpt(reply("452 4.2.2 Mailbox full, try again later"))
    assert VERDICT_OF[outcome] == (Status.UNKNOWN, SubStatus.MAILBOX_FULL)


def test_enhanced_code_needs_the_reply_class_to_match() -> None:
    # A "5.1.1" after a 4xx code is not an enhanced code: the reply stays a deferral.
    parsed = reply("450 5.1.1 mailbox busy")
    assert parsed.enhanced is None
    assert classify_rcpt(parsed) is Outcome.DEFERRED
    assert reply("550-5.1.1 first\n550 5.1.1 second").enhanced == "5.1.1"


@pytest.mark.parametrize(
    ("line", "stage", "expected"),
    [
        (
            "554 5.7.1 mx1.gmx.example Nemesis ESMTP Service not available; No SMTP service; "
            "IP address is block listed",
            "banner",
            SubStatus.SMTP_BLOCKED,
        ),
        (
            "421 4.7.0 Too many concurrent connections, try again later",
            "banner",
            SubStatus.SMTP_CONNECTION_FAILED,
        ),
        ("530 5.7.0 Must issue a STARTTLS command first", "MAIL", SubStatus.SMTP_BLOCKED),
        ("451 4.7.1 Sender greylisted, try again later", "MAIL", SubStatus.GREYLISTED),
        ("502 5.5.2 Error: command not recognized", "HELO", SubStatus.SMTP_BLOCKED),
    ],
)
def test_session_refusals(line: str, stage: str, expected: SubStatus) -> None:
    assert classify_refusal(reply(line), stage) is expected
