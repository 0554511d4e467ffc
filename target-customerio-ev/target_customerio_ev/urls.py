"""Which URLs the target may send a key to (CONTRIBUTING.md, "Conventions": the same rules in every
plugin)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

# What each origin setting looks like, for the messages (any other setting: the Pipelines one).
EXAMPLE_ORIGINS = {
    "track_api_url": "https://track.customer.io",
    "app_api_url": "https://api.customer.io",
}
EXAMPLE_ORIGIN = "https://cdp.customer.io"


def is_loopback_host(host: str) -> bool:
    """`localhost` or a loopback IP address (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin_error(url: object, setting: str) -> str | None:
    """Why `url` cannot be the origin of an API (one line naming `setting`), or None when it can.

    An origin is http(s) with a host and nothing else: credentials belong in the key settings, a
    query or fragment would be silently dropped, and plain http would carry the key in clear text
    anywhere but on this machine. The URL itself is never echoed (it may hold credentials).
    """
    example = f"{setting} must be an origin such as {EXAMPLE_ORIGINS.get(setting, EXAMPLE_ORIGIN)}"
    if not isinstance(url, str):
        return f"{example}, not a {type(url).__name__}."
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        _ = parts.port  # raises on a port that is not a number in range
    except ValueError:
        return f"{example} (this one cannot be parsed)."
    if parts.scheme not in ("http", "https") or not host:
        return f"{example}."
    if parts.username is not None or parts.password is not None:
        return f"{setting} must not contain credentials: put the key in its own setting."
    if parts.query or parts.fragment or parts.path not in ("", "/"):
        return f"{example}, without a path, query string or fragment."
    if parts.scheme == "http" and not is_loopback_host(host):
        return (
            f"{setting} uses plain http:// for a non-loopback host ({host}): use https:// (the key "
            "would travel in clear text)."
        )
    return None


def normalized_origin(url: str) -> str:
    """The origin without surrounding blanks or trailing slashes, ready for `origin + path`."""
    return url.strip().rstrip("/")
