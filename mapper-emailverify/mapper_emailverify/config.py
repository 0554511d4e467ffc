"""Engine settings: the one place where mapper settings (DESIGN.md names) become engine config."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

DEFAULT_EMAILVERIFY_URL = "https://app.emailverify.io"
BACKENDS = ("builtin", "emailverify")


class ConfigError(ValueError):
    """A setting the user must fix; the message says how."""


def parse_host_port(value: str, default_port: int) -> tuple[str, int]:
    """Split `host`, `host:port`, `[v6]:port` or a bare IPv6 address."""
    text = value.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
        return host, int(port) if port else default_port
    if text.count(":") == 1:
        host, port = text.split(":")
        if not port.isdigit():
            raise ConfigError(f"dns_nameservers entry {value!r} is not host or host:port")
        return host, int(port)
    return text, default_port


def _as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, Iterable):
        return [str(item).strip() for item in value if str(item).strip()]
    raise ConfigError(f"expected a list of strings, got {type(value).__name__}")


def _default_helo() -> str:
    # gethostname() never touches the network, unlike getfqdn().
    name = socket.gethostname() or "localhost"
    return name if "." in name else "localhost"


@dataclass(frozen=True)
class VerifierConfig:
    """Everything the engine needs; `from_settings` accepts the mapper's config dict as is."""

    smtp_check: bool = True
    smtp_port: int = 25
    helo_hostname: str = field(default_factory=_default_helo)
    mail_from: str = ""
    #: Budget for the banner and for each SMTP command reply, in seconds.
    smtp_timeout: float = 10.0
    #: TCP (or SOCKS) connect budget; defaults to min(5, smtp_timeout).
    smtp_connect_timeout: float | None = None
    #: Wait for the greeting (slow banners are a classic tarpit); defaults to smtp_timeout.
    smtp_banner_timeout: float | None = None
    #: Wall-clock cap for one SMTP session; defaults to 3 * smtp_timeout.
    smtp_session_timeout: float | None = None
    #: Recipients tried in one session before reconnecting (servers dislike long RCPT runs).
    smtp_max_rcpt_per_session: int = 20
    #: Seconds an idle session waits for more recipients of its domain before QUIT.
    smtp_session_linger: float = 0.25
    smtp_starttls: bool = True
    socks_proxy: str | None = None
    dns_nameservers: tuple[tuple[str, int], ...] = ()
    dns_timeout: float = 5.0
    concurrency: int = 100
    max_connections_per_mx: int = 2
    backend: str = "builtin"
    emailverify_api_key: str | None = field(default=None, repr=False)
    emailverify_api_url: str = DEFAULT_EMAILVERIFY_URL
    emailverify_timeout: float = 30.0
    extra_disposable_domains: frozenset[str] = frozenset()
    hard_bounces: frozenset[str] = frozenset()
    #: Distinct addresses whose verdicts are kept for reuse (oldest dropped first; bounds memory).
    result_memory: int = 100_000
    #: Connect failures (timeout/unreachable) to distinct hosts, before any success, that mean
    #: outbound port 25 is blocked.
    port25_probe_hosts: int = 3

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.backend == "emailverify" and not self.emailverify_api_key:
            raise ConfigError(
                "backend 'emailverify' needs emailverify_api_key (your EmailVerify.io API key)"
            )
        if self.socks_proxy and not self.socks_proxy.startswith(("socks5://", "socks5h://")):
            raise ConfigError("socks_proxy must look like socks5://host:port")
        for name in ("smtp_timeout", "dns_timeout", "concurrency", "max_connections_per_mx"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be a positive number")

    @property
    def connect_timeout(self) -> float:
        return self.smtp_connect_timeout or min(5.0, self.smtp_timeout)

    @property
    def banner_timeout(self) -> float:
        return self.smtp_banner_timeout or self.smtp_timeout

    @property
    def session_timeout(self) -> float:
        return self.smtp_session_timeout or 3 * self.smtp_timeout

    @property
    def sender(self) -> str:
        return self.mail_from or f"verify@{self.helo_hostname}"

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, Any] | None = None, **overrides: Any
    ) -> VerifierConfig:
        """Build from mapper settings; unknown (mapper-only) keys are ignored, None is default."""
        raw = {**(settings or {}), **overrides}
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {
            k: v for k, v in raw.items() if k in known and v is not None and v != ""
        }
        if "dns_nameservers" in values:
            items = values["dns_nameservers"]
            items = items if isinstance(items, list | tuple) else _as_list(items)
            values["dns_nameservers"] = tuple(
                item if isinstance(item, tuple) else parse_host_port(str(item), 53)
                for item in items
            )
        if "extra_disposable_domains" in values:
            values["extra_disposable_domains"] = frozenset(
                d.lower().lstrip("@.") for d in _as_list(values["extra_disposable_domains"])
            )
        if "hard_bounces" in values:
            values["hard_bounces"] = frozenset(_as_list(values["hard_bounces"]))
        for name in (
            "smtp_port",
            "concurrency",
            "max_connections_per_mx",
            "smtp_max_rcpt_per_session",
            "port25_probe_hosts",
            "result_memory",
        ):
            if name in values:
                values[name] = int(values[name])
        for name in (
            "smtp_timeout",
            "smtp_connect_timeout",
            "smtp_banner_timeout",
            "smtp_session_timeout",
            "smtp_session_linger",
            "dns_timeout",
            "emailverify_timeout",
        ):
            if name in values:
                values[name] = float(values[name])
        for name in ("smtp_check", "smtp_starttls"):
            if isinstance(values.get(name), str):
                values[name] = values[name].strip().lower() in ("1", "true", "yes", "on")
        if "emailverify_api_url" in values:
            values["emailverify_api_url"] = checked_origin(str(values["emailverify_api_url"]))
        return cls(**values)


def checked_origin(url: str) -> str:
    """An https origin, or plain http only to a loopback host: the API key travels in the query."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(
            "emailverify_api_url must be an origin such as https://app.emailverify.io."
        )
    if parts.scheme == "http" and not _is_loopback(host):
        raise ConfigError(
            "emailverify_api_url uses plain http:// for a non-loopback host; use https:// "
            "(the API key would travel in clear text)."
        )
    return url.strip().rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
