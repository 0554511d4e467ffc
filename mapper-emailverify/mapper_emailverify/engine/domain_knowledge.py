"""What the engine learns about a domain and its mail hosts, kept across runs when a store is given.

A run learns per domain whether it is catch-all, which provider serves it and whether it
greylists, and per mail host whether STARTTLS works. Without a store that knowledge dies with the
run, so the next day's run spends a catch-all probe per domain again. A store (the mapper's lives
next to its verdict cache, `stream_map/domain_cache.py`) keeps it for `domain_cache_ttl_days`.

Facts about a domain hold only while its MX set is the one they were learned on: a domain that
moved to another provider is learned again (`mx_digest`). The store is an optimisation: losing it
costs probes, never a verdict.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


def mx_digest(mx_hosts: Iterable[str]) -> str:
    """A short fingerprint of an MX set (order-free, case-free)."""
    names = sorted({host.lower().rstrip(".") for host in mx_hosts})
    return hashlib.sha256("\n".join(names).encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class DomainFacts:
    """What one run learned about one domain."""

    mx_digest: str  # the MX set the facts were learned on
    provider: str | None = None  # `providers.RULES` name, None for no known provider
    catch_all: bool | None = None  # None: not learned (probe skipped, deferred or refused)
    greylisting: bool = False  # a RCPT or MAIL deferral was seen there
    learned_at: float = 0.0  # Unix seconds


class DomainKnowledge(Protocol):
    """A store of `DomainFacts` by domain and STARTTLS outcomes by mail host name.

    Called from the engine's event loop: every method must return quickly (a local file, or a
    network read bounded to about a second) and never raise; a store that fails answers None and
    forgets the write.
    Entries older than the store's TTL are not returned.
    """

    def domain(self, name: str) -> DomainFacts | None: ...

    def learn_domain(self, name: str, facts: DomainFacts) -> None: ...

    def tls_works(self, host: str) -> bool | None: ...

    def learn_tls(self, host: str, works: bool) -> None: ...
