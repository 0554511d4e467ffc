"""The result taxonomy (the README's verdict tables): these strings are a user-facing contract."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """`EV_Status` values (exact strings that segment conditions compare against)."""

    VALID = "Valid"
    INVALID = "Invalid"
    CATCH_ALL = "Catch-All"
    DISPOSABLE = "Disposable"
    UNKNOWN = "Unknown"


class SubStatus(StrEnum):
    """`EV_SubStatus` reason codes."""

    # Invalid
    INVALID_SYNTAX = "invalid_syntax"
    DOMAIN_NOT_FOUND = "domain_not_found"
    NO_MX_RECORD = "no_mx_record"
    NULL_MX = "null_mx"
    MAILBOX_NOT_FOUND = "mailbox_not_found"
    MAILBOX_DISABLED = "mailbox_disabled"
    MAILBOX_FULL = "mailbox_full"
    HARD_BOUNCE_HISTORY = "hard_bounce_history"
    # Disposable
    DISPOSABLE_DOMAIN = "disposable_domain"
    # Catch-All
    CATCH_ALL = "catch_all"
    # Unknown
    SMTP_TIMEOUT = "smtp_timeout"
    SMTP_CONNECTION_FAILED = "smtp_connection_failed"
    GREYLISTED = "greylisted"
    SMTP_BLOCKED = "smtp_blocked"
    DNS_ERROR = "dns_error"
    PROVIDER_UNVERIFIABLE = "provider_unverifiable"
    SMTP_UNAVAILABLE = "smtp_unavailable"
    MX_NOT_PUBLIC = "mx_not_public"
    NO_EMAIL = "no_email"
    # Valid
    ROLE_BASED = "role_based"
    MAILBOX_EXISTS = "mailbox_exists"


#: Which status each substatus belongs to (one status per substatus keeps segments unambiguous).
STATUS_OF: dict[SubStatus, Status] = {
    **dict.fromkeys(
        (
            SubStatus.INVALID_SYNTAX,
            SubStatus.DOMAIN_NOT_FOUND,
            SubStatus.NO_MX_RECORD,
            SubStatus.NULL_MX,
            SubStatus.MAILBOX_NOT_FOUND,
            SubStatus.MAILBOX_DISABLED,
            SubStatus.MAILBOX_FULL,
            SubStatus.HARD_BOUNCE_HISTORY,
        ),
        Status.INVALID,
    ),
    SubStatus.DISPOSABLE_DOMAIN: Status.DISPOSABLE,
    SubStatus.CATCH_ALL: Status.CATCH_ALL,
    **dict.fromkeys(
        (
            SubStatus.SMTP_TIMEOUT,
            SubStatus.SMTP_CONNECTION_FAILED,
            SubStatus.GREYLISTED,
            SubStatus.SMTP_BLOCKED,
            SubStatus.DNS_ERROR,
            SubStatus.PROVIDER_UNVERIFIABLE,
            SubStatus.SMTP_UNAVAILABLE,
            SubStatus.MX_NOT_PUBLIC,
            SubStatus.NO_EMAIL,
        ),
        Status.UNKNOWN,
    ),
    SubStatus.ROLE_BASED: Status.VALID,
    SubStatus.MAILBOX_EXISTS: Status.VALID,
}

#: The one pair outside STATUS_OF: a mailbox that is full *for now* (452 4.2.2). The reason is the
#: full mailbox, so the substatus says so; the server only deferred, so the status stays Unknown
#: (a permanent 552 / 5.2.2 is Invalid/mailbox_full). No Unknown code of the table fits better:
#: `greylisted` and `smtp_blocked` would name a cause the server did not give.
TEMPORARILY_FULL: tuple[Status, SubStatus] = (Status.UNKNOWN, SubStatus.MAILBOX_FULL)

#: Every legal (status, substatus) pair.
PAIRS: frozenset[tuple[str, str]] = frozenset(
    {(str(st), str(sub)) for sub, st in STATUS_OF.items()}
    | {(str(TEMPORARILY_FULL[0]), str(TEMPORARILY_FULL[1]))}
)
