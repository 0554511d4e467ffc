"""A throwaway TLS identity for the mail hosts that offer STARTTLS.

Verifiers upgrade opportunistically and do not check certificates (email_verification.md 5.7),
so a certificate made at start-up by a private, never-saved authority is all a mail host needs.
ECDSA keys keep that to a few milliseconds.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable

import trustme


def server_tls_context(hostnames: Iterable[str]) -> ssl.SSLContext:
    """A server-side context whose certificate names every host in ``hostnames``."""
    names = sorted(set(hostnames)) or ["localhost"]
    authority = trustme.CA(key_type=trustme.KeyType.ECDSA)
    cert = authority.issue_cert(*names, key_type=trustme.KeyType.ECDSA)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context
