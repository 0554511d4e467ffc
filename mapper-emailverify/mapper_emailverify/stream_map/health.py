"""A run whose verdicts describe our own environment, not the addresses, stops instead of writing
them.

`Unknown/dns_error` (the resolver answers nothing useful), `Unknown/smtp_unavailable` (port 25 is
blocked here) and `Unknown/smtp_timeout` (mail servers never answer us) say nothing about a
mailbox. When they are most of the engine's recent verdicts (`infrastructure_unknown_threshold`,
over the last `WINDOW` verdicts once `MIN_VERDICTS` are in), the run stops with one line that names
the cause and the setting to fix. Provider rules and other Unknowns do not count: they are about
the addresses. Together with the first-contact gate (`gate.py`), nothing is written when the
environment is broken from the start; a mid-run outage is stopped within a window, and its
transient Unknowns never replace earlier definite verdicts (`records.py`).
"""

from __future__ import annotations

import collections
import threading

from mapper_emailverify.engine.errors import UserError

INFRASTRUCTURE = frozenset({"dns_error", "smtp_unavailable", "smtp_timeout"})
MIN_VERDICTS = 20  # before this many engine verdicts, judge only at the end of input
MIN_AT_END = 3  # a tiny run is judged too, once its input has ended
WINDOW = 200

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
        self._recent: collections.deque[str] = collections.deque(maxlen=WINDOW)
        self._lock = threading.Lock()

    def add(self, substatus: str) -> None:
        with self._lock:
            self._recent.append(substatus)

    def problem(self, *, input_ended: bool = False) -> UserError | None:
        """The error that must stop the run, if the recent verdicts call for one."""
        if self.threshold >= 1:
            return None
        with self._lock:
            recent = list(self._recent)
        needed = MIN_AT_END if input_ended else MIN_VERDICTS
        if len(recent) < needed:
            return None
        infra = collections.Counter(s for s in recent if s in INFRASTRUCTURE)
        share = sum(infra.values()) / len(recent)
        if not infra or share < self.threshold:
            return None
        cause, count = infra.most_common(1)[0]
        return BrokenEnvironmentError(
            f"{sum(infra.values())} of the last {len(recent)} verdicts are about this host's "
            f"environment, not the addresses ({count} Unknown/{cause}): {_ADVICE[cause]}. The run "
            f"stops instead of writing them (infrastructure_unknown_threshold is "
            f"{self.threshold:g})."
        )
