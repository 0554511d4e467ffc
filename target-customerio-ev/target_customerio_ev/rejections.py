"""When the API rejects a whole class of writes, the run stops: one line, not a dead letter each.

A bad record is the record's problem: it goes to the dead letters and the run goes on. A setting
that makes every write unacceptable (the wrong way to address email-only People, a proxy's body
limit, traits Customer.io refuses) is the run's problem: dead-lettering a million messages one by
one (and bisecting every batch to do it) only hides it. `RejectionWatch` counts what the API
accepted and rejected, per identifier kind, and says when the evidence is enough:

- during the run, `EVIDENCE` (20) messages rejected by the API and none accepted, overall or for
  one kind (e.g. every email-only identify), stop the run at once;
- at its end, `END_EVIDENCE` (3) suffice: a short run whose every write of a kind was refused
  failed just the same;
- at once, a single message smaller than `SMALL_MESSAGE` (4 KB) refused as too large (HTTP 413):
  the API takes 32 KB per message, so whatever refuses a few hundred bytes (a proxy, a wrong
  origin) refuses everything, and bisecting further cannot help.

Why 20: bisection sends messages in input order, so 20 rejections before the first acceptance
means the first 20 messages in a row (or the first 20 of one kind) were refused. A data problem
touches scattered records (a fraction of a percent), so 20 in a row is a setting, not bad luck;
and 20 dead letters, about 50 requests, is a small price for the certainty.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

EVIDENCE = 20
END_EVIDENCE = 3
SMALL_MESSAGE = 4 * 1024  # bytes: a single message this small refused with 413 is systemic
STATUS_WORDS = {
    400: "HTTP 400: the calls failed validation",
    413: "HTTP 413: the request was too large",
    422: "HTTP 422: the calls could not be processed",
    207: "per-item errors (HTTP 207)",
    200: "per-item errors",
}


@dataclass(frozen=True)
class Verdict:
    """A class of writes the API refuses: `kind` None means every write."""

    kind: str | None
    rejected: int
    statuses: tuple[int, ...]
    too_large: int | None = None  # the size of a single small message refused with 413

    def said(self) -> str:
        """What the API answered, in general terms (never a response body)."""
        return "; ".join(STATUS_WORDS.get(s, f"HTTP {s}") for s in self.statuses)


class RejectionWatch:
    """Thread-safe counts of messages the API accepted and rejected, by identifier kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.accepted: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self._kind_statuses: dict[str, Counter[int]] = {}
        self._too_large: int | None = None

    def accept(self, kinds: list[str]) -> None:
        with self._lock:
            self.accepted.update(kinds)

    def reject(self, kind: str, status: int, *, size: int | None = None) -> None:
        """One message refused; `size` (bytes) when it was refused alone."""
        with self._lock:
            if status == 413 and size is not None and size < SMALL_MESSAGE:
                self._too_large = size
            self.rejected[kind] += 1
            self.statuses[status] += 1
            self._kind_statuses.setdefault(kind, Counter())[status] += 1

    @property
    def accepted_total(self) -> int:
        with self._lock:
            return sum(self.accepted.values())

    def verdict(self, evidence: int = EVIDENCE) -> Verdict | None:
        """A class of writes rejected at least `evidence` times and never accepted, or None."""
        with self._lock:
            total = sum(self.rejected.values())
            if self._too_large is not None:
                return Verdict(None, total, (413,), too_large=self._too_large)
            if not self.accepted and total >= evidence:
                kinds = [k for k, n in self.rejected.items() if n]
                # Everything refused was of one kind: name it (its setting is the likely cause).
                kind = kinds[0] if len(kinds) == 1 else None
                return Verdict(kind, total, tuple(sorted(self.statuses)))
            for kind, n in sorted(self.rejected.items()):
                if n >= evidence and not self.accepted[kind]:
                    return Verdict(kind, n, tuple(sorted(self._kind_statuses[kind])))
        return None
