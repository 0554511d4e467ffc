"""A deterministic world of People, domains, DNS records and mail hosts, generated from a seed.

Everything is derived from ``(seed, index)`` on demand, so a world of a million People costs no
more memory than one of a thousand: the servers look a Person up by index, by ``cio_id``, by ``id``
or by address in O(1). Each Person carries its ground truth (the verdict DESIGN.md's precedence
gives for its address), so accuracy can be measured against what the pipeline writes. The tables
it draws from (names, domains, reply wordings, weights, verdicts) are in ``world_data.py``.

The workspace can change while a test runs: ``add_people`` appends new People after the generated
ones and ``delete_people`` hides some. Both are overlays on the generated model (a tuple of added
People and a set of deleted indexes, each replaced whole under a lock), so readers on the servers'
thread see either the old or the new workspace, never half of a change.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import itertools
import random
import re
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar, TypedDict, Unpack

from disposable_email_domains import blocklist as _DISPOSABLE_BLOCKLIST

from .loopback import host_address
from .world_data import (
    BAD_SYNTAX,
    BIG_PROVIDERS,
    CASE_WEIGHTS,
    CATCH_ALL,
    CIO_ID_OFFSET,
    DAY,
    DISPOSABLE,
    DNS_TTL,
    DOMAIN_WORDS,
    EOP_MX_SUFFIX,
    FIRST_NAMES,
    FIXED_VERDICTS,
    GREYLIST_THEN_HONEST_CASES,
    HARD_BOUNCE_KINDS,
    HOST_BEHAVIOURS,
    ID_OFFSET,
    INVALID,
    LAST_NAMES,
    LOOKALIKE_HOSTS,
    M365_DBEB_UNKNOWN,
    MAILBOX_CASES,
    MAILBOX_VERDICTS,
    MAILBOX_WEIGHTS,
    MICROSOFT_IDENT,
    PLANS,
    PROVIDER_CASE_WEIGHTS,
    PROVIDER_NAMES,
    PROVIDER_OF_KIND,
    ROLE_MAILBOXES,
    SEGMENTS,
    SHARED_DOMAIN_KINDS,
    SHARED_EOP_HOST,
    SHARED_HOST_CASE_WEIGHTS,
    SHARED_HOSTING_HOST,
    SHARED_WORKSPACE_HOST,
    SLOW_DNS_SECONDS,
    SUPPRESSION_REASONS,
    SUPPRESSION_RULES,
    TYPO_DOMAINS,
    UNKNOWN,
    USER_UNKNOWN_REPLIES,
    VALID,
    VERIFIER_DOMAIN,
    HostOptions,
    SegmentRow,
    SegmentRule,
)

# The world's types, and the constants tests, benchmarks and the plugins' tests import from here
# (re-exported from world_data, where they are declared).
__all__ = [
    "CATCH_ALL",
    "CIO_ID_OFFSET",
    "DAY",
    "DISPOSABLE",
    "DNS_TTL",
    "ID_OFFSET",
    "INVALID",
    "MAILBOX_CASES",
    "PROVIDER_CASE_WEIGHTS",
    "PROVIDER_NAMES",
    "ROLE_MAILBOXES",
    "SHARED_EOP_HOST",
    "SHARED_HOSTING_HOST",
    "SHARED_HOST_CASE_WEIGHTS",
    "SHARED_WORKSPACE_HOST",
    "SLOW_DNS_SECONDS",
    "UNKNOWN",
    "USER_UNKNOWN_REPLIES",
    "VALID",
    "Domain",
    "Keys",
    "Person",
    "SmtpHost",
    "Truth",
    "World",
    "WorldStats",
    "normalize_address",
]


@dataclass(frozen=True)
class SmtpHost:
    """One mail server: an address on 127.0.0.0/8 with a behaviour the SMTP server reproduces."""

    ip: str
    hostname: str
    # normal, catch_all, accept_all, greylist, tarpit, policy_block, drop_after_banner,
    # too_many_rcpt, busy_421, starttls
    behavior: str
    unknown_reply: str = USER_UNKNOWN_REPLIES[0]  # {rcpt}: the recipient
    max_connections: int | None = None  # busy_421: more concurrent connections get "421 4.7.0"
    # too_many_rcpt: later RCPTs of the connection (RSET or not) get rcpt_limit_reply
    max_rcpt_per_session: int | None = None
    require_starttls: bool = False
    esmtp: bool = True  # False: EHLO gets "502 5.5.2", only HELO works
    latency: float = 0.0  # seconds before each reply
    tarpit_seconds: float = 120.0
    # greylist: each new (client ip, sender, recipient) gets greylist_reply at RCPT for this long
    # (obs.faults.greylist_seconds overrides it), then honest answers
    greylist_seconds: float = 300.0
    # --- provider look-alikes (None: the server's generic wording) ---
    provider: str | None = None  # the big provider it plays (world_data.PROVIDER_NAMES)
    ident: str | None = None  # the banner after the host name (default "ESMTP Postfix")
    ok_reply: str | None = None  # RCPT accepted ("250 2.1.5 OK")
    disabled_reply: str | None = None  # a disabled mailbox ("550 5.2.1 ... disabled")
    greylist_reply: str | None = None  # "451 4.7.1 Greylisted, ..."; {rcpt}, {seconds} left
    rcpt_limit_reply: str | None = None  # over max_rcpt_per_session ("452 4.5.3 Too many ...")
    enhanced_status_codes: bool = True  # False: not in EHLO, and stripped from every reply
    # Google: a RCPT for another domain than an accepted one of the transaction gets a 451 4.3.0
    one_domain_per_transaction: bool = False
    catch_all_domains: frozenset[str] = frozenset()  # domains served as catch-all (Workspace)
    # --- sessions shared across recipients and domains (issue 19) ---
    pipelining: bool = True  # PIPELINING in EHLO (RFC 2920), as Gmail and Microsoft advertise it
    refuse_rset: bool = False  # RSET gets "502 5.5.2 ..." and the transaction stays open
    # RCPTs a client (by its address) may send this host per minute (a window of
    # obs.faults.rcpt_rate_window_seconds); one more gets rate_limit_reply, by default the
    # provider's (world_data.RATE_LIMIT_REPLIES). obs.faults.max_rcpt_per_minute overrides it for
    # every host. None: no limit.
    max_rcpt_per_minute: int | None = None
    rate_limit_reply: str | None = None  # {client}: the client's address, {host}: the host name


@dataclass(frozen=True)
class Domain:
    name: str  # ASCII (punycode) form
    kind: str
    mx: tuple[tuple[int, str], ...] = ()  # (preference, hostname); (0, ".") is a null MX
    a: tuple[str, ...] = ()  # A records of the domain itself (implicit MX)
    display: str | None = None  # Unicode form for IDN domains


@dataclass(frozen=True)
class Truth:
    status: str
    substatus: str
    case: str
    accepted: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    # The big provider the address's domain is on (world_data.PROVIDER_NAMES), None for any other.
    provider: str | None = None

    @property
    def is_invalid(self) -> bool:
        return self.status == INVALID


@dataclass(frozen=True)
class Person:
    index: int
    cio_id: str
    id: str | None
    email: str | None
    attributes: dict[str, str]
    unsubscribed: bool
    segments: tuple[int, ...]
    truth: Truth
    # exists / unknown / disabled / full, when the address reaches an honest mail host
    mailbox: str | None


class WorldStats(TypedDict):
    """``World.stats()``: what `cio-sandbox serve`, `cio-sandbox world` and the demo print."""

    people: int
    email_only: int
    domains: int
    mail_hosts: int
    by_status: dict[str, int]
    by_case: dict[str, int]


@dataclass(frozen=True)
class Keys:
    app_api_key: str
    pipelines_api_key: str
    track_site_id: str
    track_api_key: str
    emailverify_api_key: str


def _truth(
    status: str, substatus: str, case: str, *also: tuple[str, str], provider: str | None = None
) -> Truth:
    return Truth(status, substatus, case, frozenset({(status, substatus), *also}), provider)


@functools.lru_cache(maxsize=16)
def _cumulative(weights: tuple[tuple[str, int], ...]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    return tuple(name for name, _ in weights), tuple(itertools.accumulate(w for _, w in weights))


def _pick(rng: random.Random, weights: tuple[tuple[str, int], ...]) -> str:
    """A name drawn with the given integer weights (one randrange per draw)."""
    names, cumulative = _cumulative(weights)
    return names[bisect.bisect_right(cumulative, rng.randrange(cumulative[-1]))]


class World:
    """The sandbox's ground truth: People, segments, suppressions, DNS zone and mail hosts.

    ``case_weights`` picks the mix of cases (``CASE_WEIGHTS`` by default, ``PROVIDER_CASE_WEIGHTS``,
    ``SHARED_HOST_CASE_WEIGHTS``); ``shared_domains`` (0: none) adds that many custom domains on
    three shared mail hosts, the domains ``SHARED_HOST_CASE_WEIGHTS`` draws from.
    """

    SEGMENTS: ClassVar[tuple[SegmentRow, ...]] = SEGMENTS
    SUPPRESSION_RULES: ClassVar[dict[str, tuple[int, int]]] = SUPPRESSION_RULES
    HARD_BOUNCE_KINDS: ClassVar[tuple[str, ...]] = HARD_BOUNCE_KINDS

    def __init__(
        self,
        seed: int = 7,
        people: int = 3000,
        *,
        region: str = "us",
        domains: int = 40,
        now: float | None = None,
        case_weights: tuple[tuple[str, int], ...] | None = None,
        smtp_latency: float = 0.0,
        shared_domains: int = 0,
    ) -> None:
        if region not in ("us", "eu"):
            raise ValueError("region must be 'us' or 'eu'")
        if shared_domains != 0 and shared_domains < len(SHARED_DOMAIN_KINDS):
            raise ValueError(f"shared_domains must be 0 or at least {len(SHARED_DOMAIN_KINDS)}")
        self.seed = seed
        self.people_count = people
        self.region = region
        self.now = time.time() if now is None else now
        self.case_weights = case_weights or CASE_WEIGHTS
        self.shared_domains = shared_domains
        self.keys = Keys(
            app_api_key=f"sbx_app_{region}_{seed}_k3y",
            pipelines_api_key=f"sbx_cdp_{seed}_wr1te",
            track_site_id=f"sbx_site_{seed}",
            track_api_key=f"sbx_track_{seed}_k3y",
            emailverify_api_key=f"sbx_ev_{seed}_k3y",
        )
        self.smtp_hosts: dict[str, SmtpHost] = {}
        self.dead_ips: set[str] = set()
        self.domains: dict[str, Domain] = {}
        self.zone: dict[str, dict[str, list[str]]] = {}
        self.dns_servfail: set[str] = set()
        self.dns_delay: dict[str, float] = {}
        self._ip_counter = 0
        self._rng = random.Random(seed)
        self._by_case: dict[str, list[str]] = {}
        self._hard_bounce_rules = [self.SUPPRESSION_RULES[k] for k in self.HARD_BOUNCE_KINDS]
        self._build_domains(domains, smtp_latency)
        self._build_shared_hosts(shared_domains, smtp_latency)
        self._check_case_weights()
        # Changes to the workspace (add_people, delete_people): replaced whole, never mutated.
        self._changes_lock = threading.Lock()
        self._added: tuple[Person, ...] = ()
        self._deleted: frozenset[int] = frozenset()
        self.version = 0  # bumped by every change, for caches over the People (segment counts)
        # The verifier's own name (the sandbox's helo_hostname and mail_from domain) resolves,
        # so mail hosts that check a sender's domain accept the ready-made configuration.
        self._record(VERIFIER_DOMAIN, "A", "127.0.0.1")

    # ------------------------------------------------------------------ domains, DNS and mail hosts
    def _next_ip(self) -> str:
        n = self._ip_counter
        self._ip_counter += 1
        return host_address(n)

    def _host(
        self,
        hostname: str,
        behavior: str,
        latency: float,
        *,
        unknown_reply: str | None = None,
        **options: Unpack[HostOptions],
    ) -> SmtpHost:
        ip = self._next_ip()
        reply = unknown_reply or self._rng.choice(USER_UNKNOWN_REPLIES)
        host = SmtpHost(
            ip=ip,
            hostname=hostname,
            behavior=behavior,
            unknown_reply=reply,
            latency=latency,
            **options,
        )
        self.smtp_hosts[ip] = host
        self._record(hostname, "A", ip)
        return host

    def resolves(self, name: str) -> bool:
        """Whether `name` has an MX or an address record (what a mail host checks of a sender's
        domain)."""
        records = self.zone.get(name.lower().rstrip("."), {})
        return any(records.get(kind) for kind in ("MX", "A", "AAAA"))

    def _record(self, name: str, rdtype: str, value: str) -> None:
        self.zone.setdefault(name.lower().rstrip("."), {}).setdefault(rdtype, []).append(value)

    def _add_domain(self, domain: Domain) -> None:
        self.domains[domain.name] = domain
        self._by_case.setdefault(domain.kind, []).append(domain.name)
        if domain.kind in ("nxdomain", "typo"):
            return  # not in the zone: NXDOMAIN
        self.zone.setdefault(domain.name, {})
        for pref, host in domain.mx:
            self._record(domain.name, "MX", f"{pref} {host.rstrip('.')}.")
        for ip in domain.a:
            self._record(domain.name, "A", ip)
        self._record(
            domain.name,
            "TXT",
            '"v=spf1 -all"' if not domain.mx and not domain.a else '"v=spf1 mx -all"',
        )

    def _mail_domain(
        self, name: str, kind: str, behavior: str, latency: float, **options: Unpack[HostOptions]
    ) -> None:
        host = self._host(f"mx1.{name}", behavior, latency, **options)
        self._add_domain(Domain(name, kind, mx=((10, host.hostname),)))

    def _word_domain(self, k: int) -> str:
        w = DOMAIN_WORDS
        return f"{w[k % len(w)]}{w[(k // len(w) + 7 * k) % len(w)]}-{k}.example"

    def _build_domains(self, normal_count: int, latency: float) -> None:
        for k in range(normal_count):
            self._mail_domain(self._word_domain(k), "normal", "normal", latency)
        for kind, options in HOST_BEHAVIOURS.items():
            for k in range(2):
                name = f"{kind.replace('_', '-')}-{k}.example"
                self._mail_domain(name, kind, kind, latency, **options)
        for provider in BIG_PROVIDERS:
            host = self._host(
                provider.mx_host,
                provider.behavior,
                latency,
                unknown_reply=provider.unknown_reply,
                **provider.options,
            )
            mx = ((provider.mx_preference, host.hostname),)
            self._add_domain(Domain(provider.domain, provider.kind, mx=mx))
        # DNS-level behaviours.
        for k in range(2):
            idn_unicode = f"bücher-{k}.example"
            idn_ascii = idn_unicode.encode("idna").decode("ascii")
            host = self._host(f"mx1.{idn_ascii}", "normal", latency)
            self._add_domain(
                Domain(idn_ascii, "idn", mx=((10, host.hostname),), display=idn_unicode)
            )
            implicit = self._host(f"no-mx-a-{k}.example", "normal", latency, esmtp=False)
            self.zone[implicit.hostname]["A"].clear()  # the domain's own A record is added below
            self._add_domain(Domain(implicit.hostname, "no_mx_a", a=(implicit.ip,)))
            dead_ip = self._next_ip()
            self.dead_ips.add(dead_ip)
            name = f"dead-first-mx-{k}.example"
            self._record(f"mx1.{name}", "A", dead_ip)
            second = self._host(f"mx2.{name}", "normal", latency)
            self._add_domain(
                Domain(name, "dead_first_mx", mx=((10, f"mx1.{name}"), (20, second.hostname)))
            )
            slow = f"slow-dns-{k}.example"
            self._mail_domain(slow, "slow_dns", "normal", latency)
            self.dns_delay[slow] = SLOW_DNS_SECONDS
            self._add_domain(Domain(f"null-mx-{k}.example", "null_mx", mx=((0, "."),)))
            self._add_domain(Domain(f"no-mail-{k}.example", "no_mx_no_a"))
            broken = f"broken-dns-{k}.example"
            self._add_domain(Domain(broken, "servfail"))
            self.dns_servfail.add(broken)
            self._add_domain(Domain(f"expired-startup-{k}.example", "nxdomain"))
        for typo in TYPO_DOMAINS:
            self._add_domain(Domain(typo, "typo"))
        # Real disposable domains from the list (and a subdomain of one); the pipeline must not
        # probe them.
        disposable = sorted(d for d in _DISPOSABLE_BLOCKLIST if d.count(".") == 1)
        picks = [
            d for d in random.Random(self.seed).sample(disposable, 5) if d != "mailinator.com"
        ][:4]
        for name in [*picks, "mailinator.com", "inbox.mailinator.com"]:
            host = self._host(f"mx.{name}", "accept_all", latency)
            self._add_domain(Domain(name, "disposable", mx=((10, host.hostname),)))
        self._build_lookalikes(latency)

    def _build_lookalikes(self, latency: float) -> None:
        """The provider look-alikes, after every other host (so earlier addresses stay) and with
        their own random stream (so the world's draws stay): new cases on new domains only."""
        rng = random.Random(f"{self.seed}:providers")
        for spec in LOOKALIKE_HOSTS:
            reply = spec.unknown_reply
            options: HostOptions = {**spec.options, "provider": spec.provider}
            host = self._host(
                spec.mx_host,
                spec.behavior,
                latency,
                unknown_reply=reply if isinstance(reply, str) else rng.choice(reply),
                **options,
            )
            for name, kind in spec.domains:
                self._add_domain(Domain(name, kind, mx=((spec.mx_preference, host.hostname),)))

    def _build_shared_hosts(self, count: int, latency: float) -> None:
        """``count`` custom domains on three shared hosts (issue 19), after every other host (so
        the addresses of the others stay) and drawing nothing from the world's random stream.

        Workspace domains get the look-alike ``aspmx.l.google.com`` as MX; each Microsoft 365
        tenant its own MX name, every one an A record of one shared host (``SHARED_EOP_HOST``);
        the hosting provider's customers ``SHARED_HOSTING_HOST``.
        """
        if count == 0:
            return
        workspace = next(h for h in self.smtp_hosts.values() if h.hostname == SHARED_WORKSPACE_HOST)
        eop = self._host(
            SHARED_EOP_HOST,
            "normal",
            latency,
            unknown_reply=M365_DBEB_UNKNOWN,
            provider="microsoft365",
            ident=MICROSOFT_IDENT,
        )
        hosting = self._host(
            SHARED_HOSTING_HOST, "normal", latency, unknown_reply=USER_UNKNOWN_REPLIES[0]
        )
        sizes = [max(1, count * tenths // 10) for _, _, tenths in SHARED_DOMAIN_KINDS[:-1]]
        sizes.append(count - sum(sizes))
        words, n = DOMAIN_WORDS, len(DOMAIN_WORDS)
        for (kind, infix, _), size in zip(SHARED_DOMAIN_KINDS, sizes, strict=True):
            for k in range(size):
                name = f"{words[3 * k % n]}{words[(k // n + 5 * k + 1) % n]}-{infix}{k}.example"
                if kind == "shared_workspace":
                    mx = ((1, workspace.hostname),)
                elif kind == "shared_m365":
                    tenant_mx = f"{name.replace('.', '-')}.{EOP_MX_SUFFIX}"
                    self._record(tenant_mx, "A", eop.ip)
                    mx = ((0, tenant_mx),)
                else:
                    mx = ((10, hosting.hostname),)
                self._add_domain(Domain(name, kind, mx=mx))

    def _check_case_weights(self) -> None:
        """Every case the mix draws must have a domain in this world (the shared-host cases need
        ``shared_domains``)."""
        missing = [
            case
            for case, weight in self.case_weights
            if weight > 0
            and case != "no_email"
            and {"hard_bounce": "normal", "bad_syntax": "normal"}.get(case, case)
            not in self._by_case
        ]
        if missing:
            hint = (
                " (SHARED_HOST_CASE_WEIGHTS needs World(shared_domains=N))"
                if self.case_weights == SHARED_HOST_CASE_WEIGHTS
                else ""
            )
            raise ValueError(f"no domain in this world for case(s) {', '.join(missing)}{hint}")

    def provider_of(self, address_or_domain: str) -> str | None:
        """The big provider (one of ``PROVIDER_NAMES``) whose mail system an address or domain is
        on; None for any other domain, or one that is not the world's."""
        name = normalize_address(address_or_domain).rpartition("@")[2]
        domain = self.domains.get(name)
        return None if domain is None else PROVIDER_OF_KIND.get(domain.kind)

    # ------------------------------------------------------------------ People
    @property
    def index_end(self) -> int:
        """One past the last Person index: the generated People, then the added ones."""
        return self.people_count + len(self._added)

    @property
    def live_count(self) -> int:
        """How many People the workspace holds now (generated + added - deleted)."""
        return self.index_end - len(self._deleted)

    def is_live(self, i: int) -> bool:
        """Whether Person ``i`` is in the workspace now (exists and was not deleted)."""
        return 0 <= i < self.index_end and i not in self._deleted

    def iter_people(self) -> Iterator[Person]:
        """The People in the workspace now, by index: generated, then added; never the deleted."""
        added, deleted = self._added, self._deleted
        for i in range(self.people_count + len(added)):
            if i not in deleted:
                yield self._person(i) if i < self.people_count else added[i - self.people_count]

    def person(self, i: int) -> Person:
        """Person ``i``, deleted or not (its ground truth stays)."""
        if 0 <= i < self.people_count:
            return self._person(i)
        added = self._added
        if 0 <= i - self.people_count < len(added):
            return added[i - self.people_count]
        raise IndexError(i)

    def live_person(self, i: int) -> Person | None:
        """Person ``i`` if the workspace holds it now, else None."""
        if i in self._deleted:
            return None
        try:
            return self.person(i)
        except IndexError:
            return None

    # ------------------------------------------------------------------ changes to the workspace
    def add_people(self, count: int) -> list[Person]:
        """``count`` new People, in the workspace from now on (after every existing index).

        Each has an address on one of the world's normal domains (so its mail host answers
        honestly and its ground truth is the mailbox's), no ``EV_*`` attributes yet, and
        ``created_at`` now; about one in ten is email-only, as in the generated world.
        """
        if count < 0:
            raise ValueError("count must be >= 0")
        with self._changes_lock:
            first = self.index_end
            created = int(time.time())
            new = [self._new_person(first + k, created) for k in range(count)]
            self._added = (*self._added, *new)
            self.version += 1
        return new

    def delete_people(self, people: Iterable[Person | int]) -> None:
        """Take People (or indexes) out of the workspace: lookups and searches no longer see them.

        Their addresses and mailboxes stay in the mail world, as a deleted profile leaves them.
        """
        indexes = {p if isinstance(p, int) else p.index for p in people}
        with self._changes_lock:
            self._deleted = self._deleted | indexes
            self.version += 1

    def reset_changes(self) -> None:
        """Forget every added and deleted Person: the generated workspace again."""
        with self._changes_lock:
            self._added, self._deleted = (), frozenset()
            self.version += 1

    def _new_person(self, i: int, created: int) -> Person:
        rng = random.Random(self.seed * 1_000_003 + i)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        email, truth, mailbox = self._address(i, rng, "normal", first, last)
        own_address = email is not None and f"{i}@" in normalize_address(email)
        return self._assemble(
            i,
            rng,
            first,
            last,
            email,
            truth,
            mailbox,
            own_address=own_address,
            created=created,
            stale_verdict=False,
        )

    # One cache for every World: its entries keep their world alive, which B019 warns of; worlds
    # live for the whole process anyway, and 131072 People are about 160 MB.
    @functools.lru_cache(maxsize=131072)  # noqa: B019  worlds live for the whole process; <=160 MB
    def _person(self, i: int) -> Person:
        rng = random.Random(self.seed * 1_000_003 + i)
        hard_bounce = any(i % m == r for m, r in self._hard_bounce_rules)
        case = "hard_bounce" if hard_bounce else _pick(rng, self.case_weights)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        mailbox: str | None = None
        duplicate_of = None
        email: str | None
        if case in ("normal", "gmail", "outlook") and i > 20 and rng.random() < 0.03:
            duplicate_of = self._person(rng.randrange(i))
        if duplicate_of is not None and duplicate_of.email is not None:
            email, truth, mailbox = duplicate_of.email, duplicate_of.truth, duplicate_of.mailbox
        else:
            email, truth, mailbox = self._address(i, rng, case, first, last)
        # Email-only People: the address is then the Person's identifier, so it is unique in the
        # workspace (never a duplicate nor a shared role mailbox).
        own_address = (
            email is not None and duplicate_of is None and f"{i}@" in normalize_address(email)
        )
        return self._assemble(i, rng, first, last, email, truth, mailbox, own_address=own_address)

    def _assemble(
        self,
        i: int,
        rng: random.Random,
        first: str,
        last: str,
        email: str | None,
        truth: Truth,
        mailbox: str | None,
        *,
        own_address: bool,
        created: int | None = None,
        stale_verdict: bool = True,
    ) -> Person:
        """Person ``i`` around its address: identifiers, attributes, segments."""
        person_id = None if (own_address and rng.random() < 0.1) else str(ID_OFFSET + i)
        cio_id = f"{CIO_ID_OFFSET + i:x}"
        if created is None:
            created = int(self.now) - rng.randrange(400 * DAY)
        attrs = {
            "cio_id": cio_id,
            "created_at": str(created),
            "first_name": first.title(),
            "last_name": last.title(),
            "plan": rng.choice(PLANS),
        }
        if person_id is not None:
            attrs["id"] = person_id
        if email is not None:
            attrs["email"] = email
        roll = rng.random()
        if stale_verdict and email is not None and roll < 0.12:
            days = rng.randrange(1, 60) if roll < 0.07 else rng.randrange(120, 400)
            attrs["EV_Status"] = truth.status
            attrs["EV_SubStatus"] = truth.substatus
            attrs["EV_Validation_Timestamp"] = str(int(self.now) - days * DAY - rng.randrange(DAY))
        segments = tuple(sid for sid, *_rest, rule in self.SEGMENTS if rule(i))
        return Person(
            index=i,
            cio_id=cio_id,
            id=person_id,
            email=email,
            attributes=attrs,
            unsubscribed=rng.random() < 0.05,
            segments=segments,
            truth=truth,
            mailbox=mailbox,
        )

    def _domain_for(self, rng: random.Random, case: str) -> Domain:
        kind = {"hard_bounce": "normal"}.get(case, case)
        return self.domains[rng.choice(self._by_case[kind])]

    def _address(
        self, i: int, rng: random.Random, case: str, first: str, last: str
    ) -> tuple[str | None, Truth, str | None]:
        local = rng.choice((f"{first}.{last}{i}", f"{first[0]}{last}{i}", f"{first}_{last}{i}"))
        if case == "no_email":
            return None, _truth(UNKNOWN, "no_email", case), None
        if case == "bad_syntax":
            name = self._domain_for(rng, "normal").name
            return (
                rng.choice(BAD_SYNTAX).format(l=local, d=name),
                _truth(INVALID, "invalid_syntax", case),
                None,
            )
        domain = self._domain_for(rng, case)
        shown = domain.display or domain.name
        provider = PROVIDER_OF_KIND.get(domain.kind)
        if case in MAILBOX_CASES:
            mailbox = _pick(rng, MAILBOX_WEIGHTS)
            if mailbox == "exists" and case != "hard_bounce" and rng.random() < 0.06:
                local = rng.choice(ROLE_MAILBOXES)
            address = self._disguise(rng, f"{local}@{shown}")
            if case == "hard_bounce":
                return address, _truth(INVALID, "hard_bounce_history", case), mailbox
            truth = self._mailbox_truth(case, mailbox, local, provider)
            return address, truth, mailbox
        address = self._disguise(rng, f"{local}@{shown}")
        if case == "greylist":  # a verifier that waits out the window gets the honest answer
            mailbox = _pick(rng, MAILBOX_WEIGHTS)
            honest = self._mailbox_truth(case, mailbox, local)
            return (
                address,
                _truth(UNKNOWN, "greylisted", case, (honest.status, honest.substatus)),
                mailbox,
            )
        return address, _truth(*FIXED_VERDICTS[case], case, provider=provider), None

    @staticmethod
    def _mailbox_truth(case: str, mailbox: str, local: str, provider: str | None = None) -> Truth:
        verdict = MAILBOX_VERDICTS[mailbox]
        if mailbox == "exists" and local in ROLE_MAILBOXES:
            verdict = (VALID, "role_based")
        if case == "busy_421":  # a verifier that exceeds the host's connection limit gets 421s
            return _truth(
                *verdict, case, (UNKNOWN, "smtp_connection_failed"), (UNKNOWN, "smtp_blocked")
            )
        if case in GREYLIST_THEN_HONEST_CASES:  # honest once the greylist window has passed
            return _truth(*verdict, case, (UNKNOWN, "greylisted"), provider=provider)
        return _truth(*verdict, case, provider=provider)

    @staticmethod
    def _disguise(rng: random.Random, address: str) -> str:
        """Some addresses arrive as users typed them: mixed case or padded with whitespace."""
        roll = rng.random()
        if roll < 0.03:
            local, _, domain = address.partition("@")
            return f"{local}@{domain.upper()}"
        if roll < 0.05:
            return f"  {address} "
        return address

    # ------------------------------------------------------------------ lookups used by the servers
    def person_by_cio_id(self, cio_id: str) -> Person | None:
        """The Person in the workspace with this (unprefixed, hex) cio_id."""
        try:
            i = int(cio_id, 16) - CIO_ID_OFFSET
        except (TypeError, ValueError):
            return None
        p = self.live_person(i)
        return p if p is not None and p.cio_id == cio_id else None

    def person_by_id(self, person_id: str) -> Person | None:
        """The Person in the workspace with this id."""
        try:
            i = int(person_id) - ID_OFFSET
        except (TypeError, ValueError):
            return None
        if str(ID_OFFSET + i) != person_id:
            return None
        p = self.live_person(i)
        return p if p is not None and p.id == person_id else None

    def person_by_email(self, address: str, *, deleted_too: bool = False) -> Person | None:
        """The first Person in the workspace whose address normalizes to ``address``
        (case-insensitive); with ``deleted_too``, deleted People count as well.

        Local parts end with the Person's index, so the candidates are the digit runs of the string
        (a malformed address still carries its index somewhere).
        """
        wanted = normalize_address(address)
        for digits in re.findall(r"\d+", wanted.rpartition("@")[0] or wanted):
            i = int(digits)
            if deleted_too:
                try:
                    p: Person | None = self.person(i)
                except IndexError:
                    p = None
            else:
                p = self.live_person(i)
            if p is not None and p.email is not None and normalize_address(p.email) == wanted:
                return p
        return None

    def mailbox_state(self, address: str) -> str:
        """What an honest mail host says of this mailbox: exists, unknown, disabled or full.

        Mailboxes outlive profiles: a deleted Person's mailbox is still there.
        """
        wanted = normalize_address(address)
        local, _, domain = wanted.rpartition("@")
        if domain not in self.domains:
            return "unknown"
        if local in ROLE_MAILBOXES:
            return "exists"
        person = self.person_by_email(wanted, deleted_too=True)
        if person is None or person.mailbox is None:
            return "unknown"
        return person.mailbox

    def truth_for_address(self, address: str) -> Truth | None:
        """The verdict an ideal verifier gives any address on this world (None: not an address)."""
        person = self.person_by_email(address, deleted_too=True)
        if person is not None:
            return person.truth
        wanted = normalize_address(address)
        local, at, name = wanted.rpartition("@")
        if not at or not local:
            return None
        domain = self.domains.get(name)
        if domain is None:
            return _truth(INVALID, "domain_not_found", "nxdomain")
        provider = PROVIDER_OF_KIND.get(domain.kind)
        if domain.kind in MAILBOX_CASES:
            return self._mailbox_truth(domain.kind, self.mailbox_state(wanted), local, provider)
        fixed = FIXED_VERDICTS.get(domain.kind)
        return _truth(*fixed, domain.kind, provider=provider) if fixed else None

    def address_for(self, case: str, mailbox: str = "exists") -> str:
        """A Person's address of the given behaviour (and mailbox state, where it matters)."""
        for person in self.iter_people():
            if person.truth.case != case or person.email is None:
                continue
            if case in MAILBOX_CASES and person.mailbox != mailbox:
                continue
            if person.email != person.email.strip() or person.truth.substatus == "role_based":
                continue
            return person.email
        raise LookupError(f"no person with case={case!r} mailbox={mailbox!r} in this world")

    # ------------------------------------------------------------------ segments and suppressions
    @property
    def segments(self) -> list[dict[str, object]]:
        created = int(self.now) - 200 * DAY
        return [
            {
                "id": sid,
                "deduplicate_id": f"{sid}:{created}",
                "name": name,
                "description": "",
                "state": state,
                "progress": progress,
                "type": kind,
                "tags": None,
                "created_at": created,
                "updated_at": created + sid * 3600,
            }
            for sid, name, kind, state, progress, _rule in self.SEGMENTS
        ]

    def segment_rule(self, segment_id: int) -> SegmentRule | None:
        for sid, *_rest, rule in self.SEGMENTS:
            if sid == segment_id:
                return rule
        return None

    def suppressions(self, kind: str) -> list[dict[str, object]]:
        """ESP suppressions of one kind, oldest first (as Mailgun recorded them)."""
        if kind not in self.SUPPRESSION_RULES:
            raise KeyError(kind)
        modulus, rest = self.SUPPRESSION_RULES[kind]
        rows = []
        for i in range(rest, self.people_count, modulus):
            p = self._person(i)
            if p.email is None or normalize_address(p.email).count("@") != 1:
                continue
            status = "550" if kind in self.HARD_BOUNCE_KINDS else "554"
            rows.append(
                {
                    "created": int(self.now) - (self.people_count - i) * 60,
                    "email": normalize_address(p.email),
                    "reason": SUPPRESSION_REASONS[kind],
                    "status": status,
                }
            )
        return rows

    def stats(self) -> WorldStats:
        """A summary of the world for `cio-sandbox serve` and the demo."""
        by_status: dict[str, int] = {}
        by_case: dict[str, int] = {}
        email_only = 0
        for p in self.iter_people():
            by_status[p.truth.status] = by_status.get(p.truth.status, 0) + 1
            by_case[p.truth.case] = by_case.get(p.truth.case, 0) + 1
            email_only += p.id is None
        return {
            "people": self.live_count,
            "email_only": email_only,
            "domains": len(self.domains),
            "mail_hosts": len(self.smtp_hosts),
            "by_status": by_status,
            "by_case": by_case,
        }


def normalize_address(address: str) -> str:
    """Lower-case, trimmed, with the domain in ASCII (punycode) form."""
    address = address.strip().lower()
    local, at, domain = address.rpartition("@")
    if not at:
        return address
    with contextlib.suppress(UnicodeError):
        domain = domain.encode("idna").decode("ascii")
    return f"{local}@{domain}"
