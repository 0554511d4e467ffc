"""Syntax and normalization: email-validator without its (blocking) deliverability step."""

from __future__ import annotations

from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email


@dataclass(frozen=True)
class Address:
    """A syntactically valid address, normalized."""

    normalized: str  # the address as it should be stored (Unicode domain, NFC, domain lowercased)
    local_part: str
    domain: str  # Unicode form, lowercased
    ascii_domain: str  # punycode form, what DNS and SMTP see
    ascii_email: str | None  # None when the local part needs SMTPUTF8

    @property
    def key(self) -> str:
        """Identity for de-duplication: mailbox names are case-insensitive in practice."""
        return f"{self.local_part}@{self.ascii_domain}".casefold()

    @property
    def smtp_address(self) -> str:
        return self.ascii_email or f"{self.local_part}@{self.ascii_domain}"


class SyntaxProblem(ValueError):
    """Why an address is not an address (message is safe to show; it never holds the address)."""


def parse(text: str) -> Address:
    """Validate RFC 5322/6531 syntax, IDNA-encode the domain and check lengths.

    `strict=True` adds the 64-octet local-part limit; special-use domains (.local, .invalid, ...)
    are rejected because mail to them never leaves the building.
    """
    try:
        info = validate_email(text, check_deliverability=False, strict=True)
    except EmailNotValidError as exc:
        raise SyntaxProblem(_redact(str(exc), text)) from None
    except Exception:  # email-validator/idna may raise on pathological Unicode
        raise SyntaxProblem("The address could not be parsed.") from None
    domain = info.domain.lower()
    return Address(
        normalized=f"{info.local_part}@{domain}",
        local_part=info.local_part,
        domain=domain,
        ascii_domain=info.ascii_domain.lower(),
        ascii_email=f"{info.ascii_local_part}@{info.ascii_domain.lower()}"
        if info.ascii_local_part
        else None,
    )


def _redact(message: str, text: str) -> str:
    # email-validator messages may quote characters of the address; they are about the syntax only.
    return message.replace(text, "<address>")
