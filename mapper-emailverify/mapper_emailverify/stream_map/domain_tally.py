"""Verdicts counted by the address's domain, for the report's "domains with the most Invalids" and
"catch-all domains": only the domain is kept, never the address (addresses are personal data).

Memory is bounded whatever the number of domains a run meets: past `2 * keep` distinct domains a
tally keeps the `keep` largest and forgets the rest. Counts are then lower bounds (a domain
forgotten and met again starts over), exact for every run with fewer distinct domains.

Like `progress.Progress`'s counters, a tally has one writer thread and no lock (it sits on the
cached path, where every record counts); readers copy it (`dict.copy`, atomic under the GIL) and
add the tallies of both threads up (`top`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

#: Domains kept between two prunings, and how many the report lists.
KEEP = 1000
TOP = 20
#: Longer domain parts are cut (a DNS name has at most 253 characters).
MAX_DOMAIN = 253


def domain_of(address: str) -> str | None:
    """The lower-cased part after the last at sign, or None when there is none."""
    at = address.rfind("@")
    if at < 0:
        return None  # without an at sign the whole value could be a name: never kept
    domain = address[at + 1 :].strip().lower()
    return domain[:MAX_DOMAIN] or None


class DomainTally:
    """A count per domain with bounded memory, written by one thread (module docstring)."""

    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self.pruned = False  # whether counts may be lower bounds
        self._counts: dict[str, int] = {}

    def add(self, address: str) -> None:
        """One verdict for `address`, counted by its domain (nothing without an at sign)."""
        domain = domain_of(address)
        if domain is None:
            return
        counts = self._counts
        counts[domain] = counts.get(domain, 0) + 1
        if len(counts) > 2 * self.keep:
            self._counts = dict(Counter(counts).most_common(self.keep))
            self.pruned = True

    def counts(self) -> dict[str, int]:
        """A copy, consistent while the writer goes on."""
        return dict.copy(self._counts)

    def __len__(self) -> int:
        return len(self._counts)


def top(tallies: Iterable[DomainTally], n: int = TOP) -> list[dict[str, object]]:
    """The `n` largest domains over `tallies`, largest first (ties by name), as the JSON report
    lists them."""
    total: Counter[str] = Counter()
    for tally in tallies:
        total.update(tally.counts())
    items = sorted(total.items(), key=lambda item: (-item[1], item[0]))
    return [{"domain": domain, "count": count} for domain, count in items[:n]]
