"""Engine settings, each declared once: name, type, default, description and limits.

`VerifierConfig` is the declaration. The mapper's JSON schema (`stream_map/settings.py`), its
`--about`, the README tables generated from it, and `emailverify-check` options all derive from the
fields below, so a default or a limit cannot differ between them. Fields marked `mapper=False` are
engine knobs for library callers; the mapper does not offer them.
"""

from __future__ import annotations

import math
import socket
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

from mapper_emailverify.engine.errors import ConfigError
from mapper_emailverify.engine.providers import NAMES as PROVIDER_NAMES
from mapper_emailverify.engine.urls import normalized_origin, origin_error

DEFAULT_EMAILVERIFY_URL = "https://app.emailverify.io"
BACKENDS = ("builtin", "emailverify")

#: How a setting looks in JSON (the mapper's schema); Python types map onto it.
Kind = Literal["boolean", "integer", "number", "string", "strings", "mapping"]


@dataclass(frozen=True)
class Doc:
    """What a setting means to a user, and the values it accepts."""

    description: str
    minimum: int | None = None
    exclusive_minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()
    secret: bool = False
    #: Offered by the mapper (its schema); False for engine knobs of library callers.
    mapper: bool = True
    #: The JSON kind when the Python type does not say it (addresses held as parsed tuples).
    kind: Kind | None = None
    #: An empty string is a value of its own (no prefix, no stream) rather than "the default".
    blank_is_value: bool = False


def setting(
    default: Any = None,
    description: str = "",
    *,
    factory: Callable[[], Any] | None = None,
    **doc: Any,
) -> Any:
    """A dataclass field carrying its `Doc`: the one declaration of a setting."""
    declared_doc = Doc(description, **doc)
    metadata = {"doc": declared_doc}
    shown = not declared_doc.secret  # a secret never reaches a repr, hence never a log line
    if factory is not None:
        return field(default_factory=factory, repr=shown, metadata=metadata)
    return field(default=default, repr=shown, metadata=metadata)


@dataclass(frozen=True)
class Declared:
    """One declared setting, read back from its dataclass field."""

    name: str
    kind: Kind
    default: Any  # None when there is none (or it is computed at run time)
    doc: Doc


def declared(cls: type[Any]) -> list[Declared]:
    """The settings a dataclass declares with `setting(...)`, in declaration order."""
    hints = get_type_hints(cls)
    out = []
    for item in fields(cls):
        doc = item.metadata.get("doc")
        if isinstance(doc, Doc):
            kind = doc.kind or _kind_of(hints[item.name])
            out.append(Declared(item.name, kind, _default_of(item), doc))
    return out


def _default_of(item: Field[Any]) -> Any:
    if item.default is MISSING or item.default is None:
        return None
    if isinstance(item.default, frozenset | tuple) and not item.default:
        return None
    return item.default


def _kind_of(hint: Any) -> Kind:
    if get_origin(hint) in (Union, types.UnionType):
        [hint] = [arg for arg in get_args(hint) if arg is not type(None)]
    origin = get_origin(hint) or hint
    if origin is bool:
        return "boolean"
    if origin is int:
        return "integer"
    if origin is float:
        return "number"
    if origin is str:
        return "string"
    if origin in (tuple, list, frozenset, set):
        return "strings"
    if origin is dict:
        return "mapping"
    raise TypeError(f"no JSON kind for {hint!r}")


def coerce(item: Declared, value: Any) -> Any:
    """A configured value (JSON, or text from an environment variable) as the declared kind."""
    if item.kind == "boolean":
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)
    if item.kind == "integer":
        return int(value)
    if item.kind == "number":
        return float(value)
    if item.kind == "strings":
        return _as_list(value)
    if item.kind == "mapping":
        if not isinstance(value, Mapping):
            raise ConfigError(f"{item.name} must be an object of names to strings")
        return {str(k): str(v) for k, v in value.items()}
    return str(value)


def limit_error(item: Declared, value: Any) -> str | None:
    """Why `value` is outside the declared limits of `item`, or None."""
    doc = item.doc
    if doc.choices and value not in doc.choices:
        return f"{item.name} must be one of {', '.join(doc.choices)}, got {value!r}"
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    if not math.isfinite(value):
        return f"{item.name} must be a finite number"
    if doc.exclusive_minimum is not None and value <= doc.exclusive_minimum:
        return f"{item.name} must be greater than {doc.exclusive_minimum:g}, got {value:g}"
    if doc.minimum is not None and value < doc.minimum:
        return f"{item.name} must be at least {doc.minimum:g}, got {value:g}"
    if doc.maximum is not None and value > doc.maximum:
        return f"{item.name} must be at most {doc.maximum:g}, got {value:g}"
    return None


def secret_error(value: object, setting: str) -> str | None:
    """Why `value` cannot be the secret `setting` (never echoing it), or None.

    A key is visible ASCII: a space, line break or control character copied along with it would
    break the request, or smuggle a header into it.
    """
    if not isinstance(value, str) or not value:
        return f"{setting} must be a non-empty string"
    if not all("!" <= char <= "~" for char in value):
        return (
            f"{setting} contains a space, line break or other character no key has: "
            "copy the key again without them"
        )
    return None


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


def _system_nameservers() -> str:
    """The resolvers of /etc/resolv.conf, read without loading dnspython."""
    try:
        with open("/etc/resolv.conf", encoding="utf-8") as handle:
            found = [
                line.split()[1]
                for line in handle
                if line.startswith("nameserver") and len(line.split()) > 1
            ]
    except OSError:
        return "none found"
    return ", ".join(found) or "none found"


def _smtp_word_error(value: str | None, setting_name: str) -> str | None:
    """A name sent on an SMTP command line: visible ASCII without spaces or angle brackets. A line
    break would end our command and start one of the setting's choosing (command injection)."""
    if value is None:
        return None
    if not value or any(not ("!" <= char <= "~") or char in "<>" for char in value):
        return (
            f"{setting_name} must be visible ASCII without spaces, line breaks, control "
            "characters or angle brackets; fix the setting"
        )
    return None


def _default_helo() -> str:
    # gethostname() never touches the network, unlike getfqdn().
    name = socket.gethostname() or "localhost"
    return name if "." in name else "localhost"


@dataclass(frozen=True)
class VerifierConfig:
    """Everything the engine needs; `from_settings` accepts the mapper's config dict as is."""

    smtp_check: bool = setting(
        True, "Ask the mail server about the mailbox (RCPT TO); off stops after DNS."
    )
    smtp_port: int = setting(25, "Port of the mail servers.", minimum=1, maximum=65535)
    helo_hostname: str = setting(
        description="Name sent in EHLO; one whose forward and reverse DNS match this host.",
        factory=_default_helo,
    )
    mail_from: str | None = setting(
        description="Envelope sender of probes (default verify@{helo_hostname})."
    )
    smtp_timeout: float = setting(10.0, "Seconds to wait for each SMTP reply.", exclusive_minimum=0)
    smtp_connect_timeout: float | None = setting(
        description="TCP (or SOCKS) connect budget; defaults to min(5, smtp_timeout).",
        exclusive_minimum=0,
        mapper=False,
    )
    smtp_banner_timeout: float | None = setting(
        description="Wait for the greeting (slow banners are a classic tarpit); default "
        "smtp_timeout.",
        exclusive_minimum=0,
        mapper=False,
    )
    smtp_session_timeout: float | None = setting(
        description="Wall-clock cap for one SMTP session; defaults to 3 * smtp_timeout.",
        exclusive_minimum=0,
        mapper=False,
    )
    verification_deadline: float | None = setting(
        description="Wall-clock limit for one verification's time with the mail servers, whatever "
        "the number of mail hosts, addresses and replies (waiting for its turn at a busy host is "
        "not counted); then Unknown/smtp_timeout. Defaults to 3 * smtp_timeout.",
        exclusive_minimum=0,
    )
    allow_private_mx: bool = setting(
        False,
        "Contact mail hosts on loopback, private, link-local or other non-public addresses "
        "(the sandbox and internal deployments opt in); otherwise they get "
        "Unknown/mx_not_public without a connection. Multicast, broadcast and unspecified "
        "addresses are never contacted.",
    )
    smtp_max_rcpt_per_session: int = setting(
        20,
        "Recipients tried in one session before reconnecting (servers dislike long RCPT runs).",
        minimum=1,
        mapper=False,
    )
    smtp_session_linger: float = setting(
        0.25,
        "Seconds an idle session waits for more recipients of its domain before QUIT.",
        minimum=0,
        mapper=False,
    )
    smtp_starttls: bool = setting(
        True, "Upgrade to TLS when the server offers STARTTLS.", mapper=False
    )
    socks_proxy: str | None = setting(
        description="socks5://[user:pass@]host:port for hosts whose port 25 egress is blocked.",
        secret=True,
    )
    dns_nameservers: tuple[tuple[str, int], ...] = setting(
        (),
        "Resolvers as host or host:port; default is the system resolver.",
        kind="strings",
    )
    dns_timeout: float = setting(5.0, "Seconds per DNS lookup.", exclusive_minimum=0)
    concurrency: int = setting(
        100,
        "Verifications at work at once (DNS, connecting, asking); those waiting in a mail host's "
        "queue or for its recipient rate hold none.",
        minimum=1,
    )
    max_connections_per_mx: int = setting(
        3, "Simultaneous SMTP sessions per mail server (politeness).", minimum=1
    )
    max_rcpt_per_minute_per_mx: int = setting(
        1200,
        "Recipients asked per minute of one mail host (by IP), over all its sessions and domains; "
        "a host that answers with a rate or reputation deferral gets half as many from then on.",
        minimum=1,
    )
    backend: str = setting(
        "builtin",
        "builtin (own checks) or emailverify (the EmailVerify.io API).",
        choices=BACKENDS,
    )
    emailverify_api_key: str | None = setting(description="EmailVerify.io API key.", secret=True)
    emailverify_api_url: str = setting(
        DEFAULT_EMAILVERIFY_URL, "Override of the EmailVerify.io API origin."
    )
    emailverify_timeout: float = setting(
        30.0, "Seconds per EmailVerify.io request.", exclusive_minimum=0, mapper=False
    )
    backend_by_provider: dict[str, str] | None = setting(
        description='Backend per mail provider, e.g. {"yahoo": "emailverify"}: addresses at '
        "providers SMTP cannot verify go to the EmailVerify.io API (needs emailverify_api_key), "
        "the rest use `backend`. Providers: " + ", ".join(PROVIDER_NAMES) + "."
    )
    greylist_retry_after: float = setting(
        360.0,
        "Seconds before a greylisted address is asked again in the same run, when the server "
        "does not name its delay.",
        minimum=0,
    )
    greylist_max_wait: float = setting(
        1200.0,
        "Longest a greylisted address waits for its retries within the run, in seconds; 0 turns "
        "the retry off (the address stays Unknown/greylisted).",
        minimum=0,
    )
    extra_disposable_domains: frozenset[str] = setting(
        frozenset(), "Domains treated as disposable in addition to the built-in list."
    )
    hard_bounces: frozenset[str] = setting(
        frozenset(), "Addresses known to have hard-bounced.", mapper=False
    )
    result_memory: int = setting(
        100_000,
        "Distinct addresses whose verdicts are kept for reuse (oldest dropped first; bounds "
        "memory).",
        minimum=0,
        mapper=False,
    )
    setup_refusal_providers: int = setting(
        3,
        "Independent mail providers that must refuse the probe itself (sender domain, IP, rate), "
        "and no more answering about mailboxes, before the run stops as misconfigured.",
        minimum=1,
        mapper=False,
    )
    setup_grace: float | None = setting(
        description="Seconds a refusal of the probe waits for that decision; defaults to "
        "2 * smtp_timeout.",
        exclusive_minimum=0,
        mapper=False,
    )
    port25_probe_hosts: int = setting(
        3,
        "Connect failures (timeout/unreachable) to distinct hosts, before any success, that mean "
        "outbound port 25 is blocked.",
        minimum=1,
        mapper=False,
    )

    def __post_init__(self) -> None:
        for item in declared(VerifierConfig):
            value = getattr(self, item.name)
            if value is not None and (problem := limit_error(item, value)):
                raise ConfigError(problem)
            if (
                item.doc.secret
                and value is not None
                and (problem := secret_error(value, item.name))
            ):
                raise ConfigError(problem)
        if self.backend == "emailverify" and not self.emailverify_api_key:
            raise ConfigError(
                "backend 'emailverify' needs emailverify_api_key (your EmailVerify.io API key)"
            )
        for provider, backend in (self.backend_by_provider or {}).items():
            if provider not in PROVIDER_NAMES:
                raise ConfigError(
                    f"backend_by_provider names an unknown provider {provider[:40]!r}; known: "
                    + ", ".join(PROVIDER_NAMES)
                )
            if backend not in BACKENDS:
                raise ConfigError(
                    f"backend_by_provider[{provider!r}] must be one of {', '.join(BACKENDS)}, "
                    f"got {backend[:40]!r}"
                )
            if backend == "emailverify" and not self.emailverify_api_key:
                raise ConfigError(
                    f"backend_by_provider sends {provider} to emailverify, which needs "
                    "emailverify_api_key (your EmailVerify.io API key)"
                )
        if self.socks_proxy and not self.socks_proxy.startswith(("socks5://", "socks5h://")):
            raise ConfigError("socks_proxy must look like socks5://host:port")
        for name in ("helo_hostname", "mail_from"):
            if problem := _smtp_word_error(getattr(self, name), name):
                raise ConfigError(problem)

    def backend_for(self, provider: str | None) -> str:
        """The backend that verifies addresses of this provider (None: no known provider)."""
        if provider is not None and self.backend_by_provider:
            return self.backend_by_provider.get(provider, self.backend)
        return self.backend

    @property
    def uses_builtin(self) -> bool:
        """Whether any address goes through our own checks (DNS, SMTP)."""
        return self.backend == "builtin" or "builtin" in (self.backend_by_provider or {}).values()

    @property
    def uses_remote(self) -> bool:
        """Whether any address may go to the EmailVerify.io API."""
        return (
            self.backend == "emailverify"
            or "emailverify" in (self.backend_by_provider or {}).values()
        )

    @property
    def connect_timeout(self) -> float:
        return self.smtp_connect_timeout or min(5.0, self.smtp_timeout)

    @property
    def banner_timeout(self) -> float:
        return self.smtp_banner_timeout or self.smtp_timeout

    @property
    def deadline(self) -> float:
        return self.verification_deadline or 3 * self.smtp_timeout

    @property
    def session_timeout(self) -> float:
        return self.smtp_session_timeout or 3 * self.smtp_timeout

    @property
    def setup_decision_grace(self) -> float:
        return self.setup_grace or 2 * self.smtp_timeout

    @property
    def sender(self) -> str:
        return self.mail_from or f"verify@{self.helo_hostname}"

    def describe(self) -> str:
        """What the engine will do, in one line for the log (no secret: a proxy's credentials
        are left out)."""
        if self.backend == "emailverify":
            return f"backend emailverify ({self.emailverify_api_url})"
        if self.dns_nameservers:
            resolver = ", ".join(f"{host}:{port}" for host, port in self.dns_nameservers)
        else:
            resolver = f"the system resolver ({_system_nameservers()})"
        parts = [f"backend builtin: resolver {resolver}"]
        if not self.smtp_check:
            return f"{parts[0]}, smtp_check off (no mailbox probe)"
        parts += [
            f"SMTP port {self.smtp_port}",
            f"HELO {self.helo_hostname}",
            f"MAIL FROM {self.sender}",
            f"concurrency {self.concurrency}",
            f"{self.max_connections_per_mx} sessions and "
            f"{self.max_rcpt_per_minute_per_mx} recipients a minute per mail host",
        ]
        if self.socks_proxy:
            proxy = urlsplit(self.socks_proxy)
            parts.append(f"via SOCKS proxy {proxy.hostname}:{proxy.port}")
        return ", ".join(parts)

    @classmethod
    def from_settings(
        cls, settings: Mapping[str, Any] | None = None, **overrides: Any
    ) -> VerifierConfig:
        """Build from mapper settings; unknown (mapper-only) keys are ignored, None is default."""
        raw = {**(settings or {}), **overrides}
        values: dict[str, Any] = {}
        for item in declared(cls):
            value = raw.get(item.name)
            if value is None or value == "":
                continue
            values[item.name] = value if item.name == "dns_nameservers" else coerce(item, value)
        if "dns_nameservers" in values:
            items = values["dns_nameservers"]
            items = items if isinstance(items, list | tuple) else _as_list(items)
            values["dns_nameservers"] = tuple(
                item if isinstance(item, tuple) else parse_host_port(str(item), 53)
                for item in items
            )
        if "extra_disposable_domains" in values:
            values["extra_disposable_domains"] = frozenset(
                d.lower().lstrip("@.") for d in values["extra_disposable_domains"]
            )
        if "hard_bounces" in values:
            values["hard_bounces"] = frozenset(values["hard_bounces"])
        if "emailverify_api_url" in values:
            url = values["emailverify_api_url"]
            if problem := origin_error(url, "emailverify_api_url"):
                raise ConfigError(problem)
            values["emailverify_api_url"] = normalized_origin(url)
        return cls(**values)
