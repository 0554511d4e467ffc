"""Which URLs the tap may send its key to.

The same three functions exist in each plugin (CONTRIBUTING.md, "Conventions"): an origin is http
or https with a host, no user or password, no query, no fragment and no path but ``/``; plain
http only to a loopback host, where the key never leaves this machine.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

EXAMPLE_ORIGIN = "https://api.customer.io"


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback IP address (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin_error(url: object, setting: str) -> str | None:
    """Why ``url`` cannot be the API origin (one line naming ``setting``), or None when it can.

    Credentials belong in app_api_key, a path, query or fragment would be silently dropped or
    misread, and plain http would carry the key in clear text anywhere but on this machine. The
    message never echoes the URL, which may hold a password.
    """
    usage = f"{setting} must be an http(s) origin such as {EXAMPLE_ORIGIN}"
    if not isinstance(url, str):
        return usage
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
        _ = parts.port  # raises on a port that is not a number in range
    except ValueError:
        return f"{usage} (this one cannot be parsed)"
    if not host or parts.scheme not in ("http", "https"):
        return usage
    if parts.username is not None or parts.password is not None:
        return f"{setting} must not contain credentials; put the key in app_api_key"
    if parts.query or parts.fragment or parts.path not in ("", "/"):
        return f"{setting} must not contain a path, query string or fragment"
    if parts.scheme == "http" and not is_loopback_host(host):
        return (
            f"{setting} must use https:// for {host} "
            f"(plain http:// is only allowed for loopback hosts)"
        )
    return None


def normalized_origin(url: str) -> str:
    """The origin without surrounding blanks or trailing slashes, ready for ``origin + path``."""
    return url.strip().rstrip("/")
