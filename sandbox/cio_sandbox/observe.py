"""What the sandbox saw (counters, landed writes) and the faults it is told to inject.

The servers run on the sandbox's event-loop thread and tests read from theirs, so every mutation
goes through one lock and readers get copies. The switches for what Customer.io's published
definitions leave open (the conformance table in sandbox/README.md) are here too, with what they
cost a client counted in ``Observatory.identifies_lost``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .world import Person


@dataclass
class Faults:
    """Fault switches, all off by default. Rates are shares of requests in [0, 1]."""

    app_error_rate: float = 0.0  # 5xx answers
    app_latency: float = 0.0  # seconds added to each App API request
    app_drop_rate: float = 0.0  # connection closed without an answer
    app_stall_rate: float = 0.0  # requests that hang for app_stall_seconds
    app_stall_seconds: float = 5.0
    app_429_storm_until: float = 0.0  # time.monotonic() deadline: every request gets 429 until then
    app_rate_limit: float = 10.0  # requests per second per key; 0 disables the limit
    pipelines_error_rate: float = 0.0
    pipelines_latency: float = 0.0
    pipelines_drop_rate: float = 0.0
    pipelines_429_storm_until: float = 0.0
    pipelines_timeout_rate: float = 0.0  # requests that hang until the client gives up
    pipelines_timeout_seconds: float = 30.0
    # seconds before each SMTP reply; None keeps each host's own latency
    smtp_latency: float | None = None
    dns_latency: float = 0.0  # seconds added to every DNS answer
    emailverify_credits: int | None = None  # EmailVerify.io credits left; None is unlimited
    # A request that is processed (it lands) but whose answer is held for pipelines_timeout_seconds,
    # so the client times out and sends it again: what messageId dedupe is for.
    pipelines_lost_answer_rate: float = 0.0
    # Strict-mode 400 for every batch holding an identify whose userId or traits.email (any case)
    # is in this set; the answer names each such call (``batch[i]``) only when
    # pipelines_strict_names_items is on.
    pipelines_reject_ids: frozenset[str] = frozenset()
    dns_servfail_rate: float = 0.0  # share of queries answered SERVFAIL
    dns_drop_rate: float = 0.0  # share of queries never answered (the resolver times out)
    dns_fault_names: frozenset[str] = frozenset()  # DNS faults only under these names; empty: all
    # Faults of mail hosts that are otherwise healthy, rolled once per SMTP session:
    # "greylist" (451 at every RCPT), "tarpit" (smtp_tarpit_seconds before each reply),
    # "disconnect" (connection dropped at RCPT) or "busy_421" (421 at the banner); a tuple of
    # kinds picks one of them at random for each faulted session.
    smtp_fault: str | tuple[str, ...] | None = None
    smtp_fault_rate: float = 0.0
    smtp_tarpit_seconds: float = 30.0
    # Every mail host checks that the MAIL FROM domain resolves (MX or A in the world's DNS), as
    # Postfix's reject_unknown_sender_domain does, and refuses every RCPT of a sender whose domain
    # does not with this code: 450 (Postfix's default, unknown_address_reject_code) or 550.
    smtp_sender_domain_check: int | None = None
    # Seconds every greylisting mail host (the greylist hosts, Zoho, the Postgrey host) defers a
    # new (client ip, sender, recipient) triplet; None keeps each host's own window (300 s for
    # the greylist hosts, 3 s for Zoho, 4 s for Postgrey).
    greylist_seconds: float | None = None
    # RCPTs a client (by its address) may send each mail host within rcpt_rate_window_seconds; one
    # more gets the host's rate reply (Google's 421 4.7.28, Microsoft's 451 4.7.500, else 421
    # 4.7.0; a 421 closes the connection). None keeps each host's own max_rcpt_per_minute (none
    # by default); a number overrides every host's.
    max_rcpt_per_minute: int | None = None
    # The window of those budgets (60 s: "per minute"); shorter in tests that wait one out.
    rcpt_rate_window_seconds: float = 60.0

    # --- Where Customer.io's published definitions are silent: one switch per possible answer ----
    # The form of cio_id that App API hydration finds a Person by with id_type=cio_id (POST
    # /v1/customers/attributes, GET /v1/customers/{id}/attributes): "raw" (3000001), "prefixed"
    # (cio_3000001) or "both". The other form is an unknown id: left out of a batch answer, 404
    # on the single GET.
    app_cio_id_form: str = "raw"
    # Search cursors (POST /v1/customers): "stable" is the index after the last Person returned,
    # so People entering or leaving the result set never shift later pages; "live_offset" is an
    # offset into the result set as it is when the next page is asked for (the vendor's example
    # cursor "MDox" is base64 "0:1"), so People created, deleted, or whose attributes change
    # (landed EV_* writes under an EV_Status filter) skip or repeat others on later pages.
    app_cursor_mode: str = "stable"
    # Whether a strict-mode 400 on /v1/batch names the bad calls ("batch[i]: why", including
    # pipelines_reject_ids rejections). Its real format is unpublished, so by default it names
    # none ("batch: one or more calls failed validation") and a client must split the batch.
    pipelines_strict_names_items: bool = False
    # An identify with an empty userId, no anonymousId and only traits.email: "accept" (lands on
    # the Person with that email, or creates one), "reject" (a bad call: strict mode 400s the
    # batch, permissive mode drops it with a 200) or "drop" (200, strict or not, never lands).
    pipelines_email_only: str = "accept"
    # Seconds between a write landing and the App API showing it (search filters, hydration,
    # GET attributes). What landed (``Observatory.landed``) is recorded at once either way.
    landing_delay_seconds: float = 0.0
    # "id", "email" or "cio_id": writes that address a Person that way (Pipelines: a userId read
    # as an id, an email-only identify or an email-shaped userId, a cio_-prefixed userId; Track:
    # the identifier's kind) are answered 200 like the others and never land.
    lose_writes_for: str | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        choices = SWITCH_CHOICES.get(name)
        if choices is not None and value not in choices:
            raise ValueError(f"Faults.{name}: {value!r} is not one of {sorted(map(str, choices))}")
        super().__setattr__(name, value)

    def storm(self, service: str, seconds: float) -> None:
        """Answer every request of ``service`` ("app" or "pipelines") with 429 for ``seconds``."""
        setattr(self, f"{service}_429_storm_until", time.monotonic() + seconds)


# The switches that take one of a few values; anything else is refused when it is set.
SWITCH_CHOICES: dict[str, frozenset[Any]] = {
    "app_cio_id_form": frozenset({"raw", "prefixed", "both"}),
    "app_cursor_mode": frozenset({"stable", "live_offset"}),
    "pipelines_email_only": frozenset({"accept", "reject", "drop"}),
    "lose_writes_for": frozenset({None, "id", "email", "cio_id"}),
}


def _as_attribute(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


class Observatory:
    """Thread-safe counters and records shared by every sandbox server."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.faults = Faults()
        # a gauge of open sessions: counter resets leave it be
        self._smtp_open: Counter[str] = Counter()
        self.reset_counters()

    # ------------------------------------------------------------------ resets
    def reset_faults(self) -> None:
        with self._lock:
            defaults = Faults()
            for f in fields(Faults):
                setattr(self.faults, f.name, getattr(defaults, f.name))

    def reset_counters(self) -> None:
        """Zero every counter and forget what landed: a blank workspace."""
        with self._lock:
            self.reset_traffic()
            self.landed: dict[str, dict[str, Any]] = {}
            # Every landed write, in order: (time.monotonic() when it landed, its traits), so the
            # App API can show only the writes older than landing_delay_seconds.
            self.landings: dict[str, list[tuple[float, dict[str, Any]]]] = {}
            self.messages_seen: set[str] = set()

    #: The window of ``peak_rcpt_per_minute`` (seconds).
    PEAK_WINDOW_SECONDS = 60.0

    def reset_traffic(self) -> None:
        """Zero the traffic counters but keep the workspace (what landed): the start of a re-run."""
        with self._lock:
            self.requests: Counter[tuple[str, str]] = Counter()
            self.rate_limited: Counter[str] = Counter()
            self.faults_injected: Counter[str] = Counter()
            self.dropped_calls = 0
            self.smtp_connections: Counter[str] = Counter()
            self.smtp_peak_concurrency: Counter[str] = Counter()
            self.rcpt: Counter[str] = Counter()
            # By mail host name: RCPTs for addresses that are no Person's and no role mailbox (what
            # a catch-all probe looks like); Google's 451 4.3.0 for a second domain in one
            # transaction; RCPTs refused by a per-connection recipient limit (Outlook.com's second
            # RCPT, the too_many_rcpt hosts).
            self.stranger_rcpts: Counter[str] = Counter()
            self.mixed_domain_rejections: Counter[str] = Counter()
            self.rcpt_limit_rejections: Counter[str] = Counter()
            # Sessions shared across recipients (issue 19), by mail host name: how many RCPTs each
            # connection and each transaction (MAIL to RSET, EHLO, HELO or the connection's end)
            # carried, as {RCPTs: how many connections / transactions}, counting those with at
            # least one RCPT (received, whatever the reply); RSET commands received; rate replies
            # sent (a client over max_rcpt_per_minute); and the most RCPTs (every client's) the host
            # received in any 60 s.
            self.rcpt_per_session: dict[str, Counter[int]] = {}
            self.rcpt_per_transaction: dict[str, Counter[int]] = {}
            self.rsets: Counter[str] = Counter()
            self.smtp_rate_limited: Counter[str] = Counter()
            self.peak_rcpt_per_minute: Counter[str] = Counter()
            self._rcpt_times: dict[str, deque[float]] = {}  # per host name, the last 60 s
            # per (host ip, client ip), the RCPTs let through within rcpt_rate_window_seconds
            self._rcpt_budgets: dict[tuple[str, str], deque[float]] = {}
            self.dns_queries: Counter[tuple[str, str]] = Counter()
            self.writes: Counter[str] = Counter()
            self.rejected: list[dict[str, Any]] = []
            # Identify calls (Pipelines) and identify items (Track) that a switch kept from landing,
            # by "<switch>:<value>": "pipelines_email_only:reject" (each email-only call refused;
            # one per request it came in), "pipelines_email_only:drop", "lose_writes_for:id",
            # "lose_writes_for:email", "lose_writes_for:cio_id".
            self.identifies_lost: Counter[str] = Counter()

    # ------------------------------------------------------------------ HTTP services
    def count_request(self, service: str, endpoint: str) -> None:
        with self._lock:
            self.requests[(service, endpoint)] += 1

    def count_rate_limited(self, service: str) -> None:
        with self._lock:
            self.rate_limited[service] += 1

    def count_fault(self, name: str) -> None:
        with self._lock:
            self.faults_injected[name] += 1

    def count_dropped(self, reason: str) -> None:
        with self._lock:
            self.dropped_calls += 1
            self.rejected.append({"reason": reason, "strict": False})

    def count_lost(self, switch: str) -> None:
        """One identify kept from landing by ``switch`` (``"<switch name>:<value>"``)."""
        with self._lock:
            self.identifies_lost[switch] += 1

    def record_rejection(self, reason: str) -> None:
        with self._lock:
            self.rejected.append({"reason": reason, "strict": True})

    def land(self, person_key: str, traits: dict[str, Any], message_id: str | None) -> bool:
        """Merge traits onto a Person; False when the messageId was already seen (a replay)."""
        with self._lock:
            if message_id is not None:
                if message_id in self.messages_seen:
                    return False
                self.messages_seen.add(message_id)
            self.landed.setdefault(person_key, {}).update(traits)
            self.landings.setdefault(person_key, []).append((time.monotonic(), dict(traits)))
            self.writes[person_key] += 1
            return True

    def visible_attributes(self, person: Person) -> Mapping[str, str]:
        """The Person's attributes as the App API shows them now: the world's, updated by what
        landed at least ``landing_delay_seconds`` ago. Read-only: a copy only when something landed.

        Customer.io stores every attribute value as a string, so landed values are read back as
        strings.
        """
        with self._lock:
            landed = self.landed.get(person.cio_id)
            if not landed:
                return person.attributes
            delay = self.faults.landing_delay_seconds
            if delay > 0:
                cutoff = time.monotonic() - delay
                landed = {}
                for at, traits in self.landings.get(person.cio_id, ()):
                    if at <= cutoff:
                        landed.update(traits)
                if not landed:
                    return person.attributes
            return {**person.attributes, **{k: _as_attribute(v) for k, v in landed.items()}}

    def current_attributes(self, person: Person) -> dict[str, str]:
        """A copy of ``visible_attributes(person)``."""
        return dict(self.visible_attributes(person))

    # ------------------------------------------------------------------ mail world
    def smtp_opened(self, ip: str) -> None:
        with self._lock:
            self.smtp_connections[ip] += 1
            self._smtp_open[ip] += 1
            self.smtp_peak_concurrency[ip] = max(
                self.smtp_peak_concurrency[ip], self._smtp_open[ip]
            )

    def smtp_closed(self, ip: str) -> None:
        with self._lock:
            self._smtp_open[ip] -= 1

    def smtp_open_now(self, ip: str) -> int:
        with self._lock:
            return self._smtp_open[ip]

    def count_rcpt(self, address: str) -> None:
        with self._lock:
            self.rcpt[address.lower()] += 1

    def count_stranger_rcpt(self, hostname: str) -> None:
        with self._lock:
            self.stranger_rcpts[hostname] += 1

    def count_mixed_domain_rejection(self, hostname: str) -> None:
        with self._lock:
            self.mixed_domain_rejections[hostname] += 1

    def count_rcpt_limit_rejection(self, hostname: str) -> None:
        with self._lock:
            self.rcpt_limit_rejections[hostname] += 1

    def count_host_rcpt(self, hostname: str) -> None:
        """One RCPT received by a mail host, for ``peak_rcpt_per_minute``."""
        now = time.monotonic()
        with self._lock:
            times = self._rcpt_times.setdefault(hostname, deque())
            times.append(now)
            cutoff = now - self.PEAK_WINDOW_SECONDS
            while times[0] <= cutoff:
                times.popleft()
            if len(times) > self.peak_rcpt_per_minute[hostname]:
                self.peak_rcpt_per_minute[hostname] = len(times)

    def take_rcpt_budget(self, host_ip: str, client: str, limit: int, window: float) -> bool:
        """Whether ``client`` may send mail host ``host_ip`` one more RCPT: fewer than ``limit``
        let through in the last ``window`` seconds (then this one counts), else False."""
        now = time.monotonic()
        with self._lock:
            times = self._rcpt_budgets.setdefault((host_ip, client), deque())
            cutoff = now - window
            while times and times[0] <= cutoff:
                times.popleft()
            if len(times) >= limit:
                return False
            times.append(now)
            return True

    def count_smtp_rate_limited(self, hostname: str) -> None:
        with self._lock:
            self.smtp_rate_limited[hostname] += 1

    def count_rset(self, hostname: str) -> None:
        with self._lock:
            self.rsets[hostname] += 1

    def record_session(self, hostname: str, rcpts: int) -> None:
        """A connection to ``hostname`` ended having carried ``rcpts`` RCPTs (none: not counted)."""
        if rcpts > 0:
            with self._lock:
                self.rcpt_per_session.setdefault(hostname, Counter())[rcpts] += 1

    def record_transaction(self, hostname: str, rcpts: int) -> None:
        """A transaction ended having carried ``rcpts`` RCPTs (none: not counted)."""
        if rcpts > 0:
            with self._lock:
                self.rcpt_per_transaction.setdefault(hostname, Counter())[rcpts] += 1

    def count_dns(self, name: str, rdtype: str) -> None:
        with self._lock:
            self.dns_queries[(name.lower().rstrip("."), rdtype)] += 1

    # ------------------------------------------------------------------ reading
    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of every counter, for tests, the demo and benchmarks."""
        with self._lock:
            return {
                "requests": dict(self.requests),
                "rate_limited": dict(self.rate_limited),
                "faults_injected": dict(self.faults_injected),
                "dropped_calls": self.dropped_calls,
                "smtp_connections": sum(self.smtp_connections.values()),
                "smtp_peak_concurrency": dict(self.smtp_peak_concurrency),
                "rcpt": sum(self.rcpt.values()),
                "stranger_rcpts": dict(self.stranger_rcpts),
                "mixed_domain_rejections": dict(self.mixed_domain_rejections),
                "rcpt_limit_rejections": dict(self.rcpt_limit_rejections),
                "rcpt_per_session": {h: dict(c) for h, c in self.rcpt_per_session.items()},
                "rcpt_per_transaction": {h: dict(c) for h, c in self.rcpt_per_transaction.items()},
                "max_rcpt_per_session": {h: max(c) for h, c in self.rcpt_per_session.items()},
                "max_rcpt_per_transaction": {
                    h: max(c) for h, c in self.rcpt_per_transaction.items()
                },
                "rsets": dict(self.rsets),
                "smtp_rate_limited": dict(self.smtp_rate_limited),
                "peak_rcpt_per_minute": dict(self.peak_rcpt_per_minute),
                "dns_queries": sum(self.dns_queries.values()),
                "landed": len(self.landed),
                "writes": sum(self.writes.values()),
                "identifies_lost": dict(self.identifies_lost),
            }

    def requests_to(self, service: str) -> int:
        with self._lock:
            return sum(n for (svc, _), n in self.requests.items() if svc == service)

    def landed_copy(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {k: dict(v) for k, v in self.landed.items()}
