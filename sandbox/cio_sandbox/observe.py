"""What the sandbox saw (counters, landed writes) and the faults it is told to inject.

The servers run on the sandbox's event-loop thread and tests read from theirs, so every mutation
goes through one lock and readers get copies.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, fields
from typing import Any


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
    # is in this set; the answer names each such call (``batch[i]``), as Customer.io does.
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

    def storm(self, service: str, seconds: float) -> None:
        """Answer every request of ``service`` ("app" or "pipelines") with 429 for ``seconds``."""
        setattr(self, f"{service}_429_storm_until", time.monotonic() + seconds)


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
            self.messages_seen: set[str] = set()

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
            self.dns_queries: Counter[tuple[str, str]] = Counter()
            self.writes: Counter[str] = Counter()
            self.rejected: list[dict[str, Any]] = []

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
            self.writes[person_key] += 1
            return True

    def current_attributes(self, person: Any) -> dict[str, str]:
        """The Person's attributes as the workspace holds them now: the world's, updated by what
        landed.

        Customer.io stores every attribute value as a string, so landed values are read back as
        strings.
        """
        with self._lock:
            landed = self.landed.get(person.cio_id)
            if not landed:
                return dict(person.attributes)
            return {**person.attributes, **{k: _as_attribute(v) for k, v in landed.items()}}

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
                "dns_queries": sum(self.dns_queries.values()),
                "landed": len(self.landed),
                "writes": sum(self.writes.values()),
            }

    def requests_to(self, service: str) -> int:
        with self._lock:
            return sum(n for (svc, _), n in self.requests.items() if svc == service)

    def landed_copy(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {k: dict(v) for k, v in self.landed.items()}
