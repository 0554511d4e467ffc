"""A run whose verdicts describe our own environment, not the addresses, stops instead of writing
them.

`Unknown/dns_error` (the resolver answers nothing useful), `Unknown/smtp_unavailable` (port 25 is
blocked here) and `Unknown/smtp_timeout` (mail servers never answer us) say nothing about a
mailbox. One domain can earn them on its own (a broken zone, a tarpit): what points at this host is
the same answer from many independent domains. So the watch keeps the latest outcome of each of the
`WINDOW` most recent domains the engine was asked about. A domain still in flight counts as fine:
failures come back faster than answers, so counting only what came back would condemn a healthy
start. When infrastructure Unknowns are the share `infrastructure_unknown_threshold` of those
domains (once `MIN_DOMAINS` answered, or `MIN_AT_END` at the end of input), the run stops with one
line that names the cause and the setting to fix.

Together with the first-contact gate (`gate.py`), nothing is written when the environment is broken
from the start; a mid-run outage is stopped within a window, and its transient Unknowns never
replace earlier definite verdicts (`records.py`).
"""

from __future__ import annotations

import collections
import threading

from mapper_emailverify.engine.errors import UserError

INFRASTRUCTURE = frozenset({"dns_error", "smtp_unavailable", "smtp_timeout"})
MIN_DOMAINS = 8  # before this many domains answered, judge only at the end of input
MIN_AT_END = 3  # a tiny run is judged too, once its input has ended
WINDOW = 200  # most recent domains

_ADVICE = {
    "dns_error": (
        "the resolver answers nothing useful: check dns_nameservers (or the system resolver) "
        "from this host"
    ),
    "smtp_unavailable": (
        "outbound port 25 looks blocked from this host: set socks_proxy to a SOCKS5 proxy with "
        "port 25 open, or use backend: emailverify"
    ),
    "smtp_timeout": (
        "mail servers never answer this host in time: outbound port 25 may be filtered (set "
        "socks_proxy to a SOCKS5 proxy with port 25 open, or use backend: emailverify), or they "
        "are slow (raise smtp_timeout)"
    ),
}


class BrokenEnvironmentError(UserError):
    """Most verdicts are about our environment: nothing of them may be written."""


class InfrastructureWatch:
    """Counts the engine's verdicts (from the engine thread) and judges the recent share."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._recent: collections.OrderedDict[str, str | None] = collections.OrderedDict()
        self._lock = threading.Lock()

    def asked(self, domain: str) -> None:
        """The engine was given an address of `domain` (from the reader thread)."""
        with self._lock:
            if domain not in self._recent:
                self._recent[domain] = None
            self._recent.move_to_end(domain)
            while len(self._recent) > WINDOW:
                self._recent.popitem(last=False)

    def add(self, domain: str, substatus: str) -> None:
        """The latest engine verdict for an address of `domain` (from the engine thread)."""
        with self._lock:
            if domain in self._recent:
                self._recent[domain] = substatus

    def undecided(self) -> bool:
        """Infrastructure Unknowns came back before enough domains answered to judge them: what
        is finished must wait (a slow reader can leave the engine idle after two verdicts)."""
        with self._lock:
            answered = [s for s in self._recent.values() if s is not None]
        return len(answered) < MIN_DOMAINS and any(s in INFRASTRUCTURE for s in answered)

    def problem(self, *, input_ended: bool = False) -> UserError | None:
        """The error that must stop the run, if the recent verdicts call for one."""
        if self.threshold >= 1:
            return None
        with self._lock:
            recent = list(self._recent.values())
        needed = MIN_AT_END if input_ended else MIN_DOMAINS
        if len(recent) < needed:
            return None
        if sum(1 for s in recent if s is not None) < needed:
            return None
        infra = collections.Counter(s for s in recent if s in INFRASTRUCTURE)
        share = sum(infra.values()) / len(recent)
        if not infra or share < self.threshold:
            return None
        cause, count = infra.most_common(1)[0]
        return BrokenEnvironmentError(
            f"{sum(infra.values())} of the last {len(recent)} domains asked got a verdict about "
            f"this host's environment, not the addresses ({count} Unknown/{cause}): "
            f"{_ADVICE[cause]}. The run stops instead of writing them "
            f"(infrastructure_unknown_threshold is {self.threshold:g})."
        )
