"""Provider rules: mail systems whose SMTP answer is no evidence about a mailbox."""

from __future__ import annotations

from collections.abc import Iterable

# Yahoo and AOL (Yahoo-operated) accept every RCPT and bounce later, so a 250 proves nothing.
_ACCEPT_EVERYTHING_MX = ("yahoodns.net",)
_ACCEPT_EVERYTHING_DOMAINS = ("yahoo.", "ymail.com", "rocketmail.com", "aol.com", "aim.com", "aol.")


def _ends_with_label(name: str, suffix: str) -> bool:
    name = name.lower().rstrip(".")
    return name == suffix or name.endswith("." + suffix)


def unverifiable_provider(domain: str, mx_hosts: Iterable[str]) -> str | None:
    """Why SMTP cannot tell about mailboxes of this domain (a short reason), or None."""
    domain = domain.lower()
    for host in mx_hosts:
        for suffix in _ACCEPT_EVERYTHING_MX:
            if _ends_with_label(host, suffix):
                return f"MX {host} belongs to a provider that accepts every recipient"
    for prefix in _ACCEPT_EVERYTHING_DOMAINS:
        if (prefix.endswith(".") and domain.startswith(prefix)) or domain == prefix:
            return f"{domain} is a provider that accepts every recipient"
    return None
