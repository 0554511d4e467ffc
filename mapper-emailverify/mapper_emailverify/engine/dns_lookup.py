"""Mail routing for a domain (dnspython async): MX, null MX, implicit MX, kinds of failure.

Only NXDOMAIN and definite "no such record" answers produce an Invalid verdict; SERVFAIL and
timeouts are `dns_error`. Answers are cached per domain for the TTL the zone gives, and concurrent
lookups of the same domain share one query (see `Verifier`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver
import dns.rrset

from mapper_emailverify.engine.errors import ConfigError
from mapper_emailverify.taxonomy import SubStatus

NEGATIVE_TTL = 300.0  # definite "no" answers (NXDOMAIN, no MX and no A)
ERROR_TTL = 15.0  # SERVFAIL / timeout: do not hammer a sick zone, but look again soon


@dataclass(frozen=True)
class MailHost:
    name: str
    preference: int
    addresses: tuple[str, ...]


@dataclass
class DomainRoute:
    """Where mail for a domain goes, or why it goes nowhere (`verdict`)."""

    domain: str
    verdict: SubStatus | None = None
    hosts: tuple[MailHost, ...] = ()
    implicit: bool = False
    records: list[str] = field(default_factory=list)
    expires: float = 0.0

    @property
    def mx_names(self) -> list[str]:
        return [host.name for host in self.hosts]


class _Outcome:
    """A lookup result that may be a definite absence, a transient error, or an answer."""

    def __init__(
        self,
        answer: dns.resolver.Answer | None = None,
        nxdomain: bool = False,
        error: str | None = None,
    ) -> None:
        self.answer, self.nxdomain, self.error = answer, nxdomain, error

    @property
    def rrset(self) -> dns.rrset.RRset | None:
        return self.answer.rrset if self.answer is not None else None

    @property
    def ttl(self) -> float:
        return float(self.rrset.ttl) if self.rrset is not None else NEGATIVE_TTL


class DnsClient:
    """Async lookups against the configured nameservers (or the system's)."""

    def __init__(self, nameservers: tuple[tuple[str, int], ...] = (), timeout: float = 5.0) -> None:
        if nameservers:
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = [
                dns.nameserver.Do53Nameserver(h, p) for h, p in nameservers
            ]
        else:
            try:
                self._resolver = dns.asyncresolver.Resolver()
            except dns.resolver.NoResolverConfiguration:
                raise ConfigError(
                    "This host has no DNS resolver configured: set `dns_nameservers`."
                ) from None
        # `lifetime` bounds a whole lookup; within it a lost UDP packet is retried after `timeout`.
        self._resolver.lifetime = timeout
        self._resolver.timeout = max(0.5, timeout / 3)
        self._resolver.retry_servfail = False
        self.queries = 0

    async def _query(self, name: str, rdtype: str) -> _Outcome:
        self.queries += 1
        try:
            answer = await self._resolver.resolve(
                name, rdtype, raise_on_no_answer=False, search=False
            )
        except dns.resolver.NXDOMAIN:
            return _Outcome(nxdomain=True)
        except dns.resolver.NoNameservers:
            return _Outcome(error="SERVFAIL")
        except dns.exception.Timeout:
            return _Outcome(error="timeout")
        except (dns.exception.DNSException, OSError, ValueError) as exc:
            return _Outcome(error=type(exc).__name__)
        return _Outcome(answer=answer)

    async def route(self, domain: str) -> DomainRoute:
        """MX by preference, null MX (RFC 7505), else the A/AAAA implicit MX (RFC 5321 5.1)."""
        route = DomainRoute(domain)
        mx = await self._query(domain, "MX")
        if mx.nxdomain:
            route.records.append(f"MX {domain}: NXDOMAIN")
            return self._finish(route, SubStatus.DOMAIN_NOT_FOUND, NEGATIVE_TTL)
        if mx.error:
            route.records.append(f"MX {domain}: {mx.error}")
            return self._finish(route, SubStatus.DNS_ERROR, ERROR_TTL)
        if mx.rrset is not None and len(mx.rrset):
            records = sorted(mx.rrset, key=lambda r: (r.preference, str(r.exchange)))
            for record in records:
                route.records.append(
                    f"MX {domain}: {record.preference} {record.exchange} (ttl {mx.rrset.ttl})"
                )
            exchanges = [r for r in records if str(r.exchange) != "."]
            if not exchanges:
                return self._finish(route, SubStatus.NULL_MX, mx.ttl)
            return await self._resolve_hosts(
                route, [(r.preference, str(r.exchange).rstrip(".")) for r in exchanges], mx.ttl
            )
        route.records.append(f"MX {domain}: no records")
        route.implicit = True
        return await self._resolve_hosts(route, [(0, domain)], NEGATIVE_TTL)

    async def _resolve_hosts(
        self, route: DomainRoute, exchanges: list[tuple[int, str]], ttl: float
    ) -> DomainRoute:
        results = await asyncio.gather(*(self._addresses(route, name) for _, name in exchanges))
        hosts = []
        definite_absence = True
        ttls = [ttl]
        for (preference, name), (addresses, outcome_ttl, definite) in zip(
            exchanges, results, strict=True
        ):
            ttls.append(outcome_ttl)
            definite_absence = definite_absence and definite
            if addresses:
                hosts.append(MailHost(name, preference, addresses))
        route.hosts = tuple(hosts)
        if hosts:
            return self._finish(route, None, min(ttls))
        if not definite_absence:
            return self._finish(route, SubStatus.DNS_ERROR, ERROR_TTL)
        if route.implicit and all(r.endswith("NXDOMAIN") for r in route.records[-1:]):
            return self._finish(route, SubStatus.DOMAIN_NOT_FOUND, NEGATIVE_TTL)
        return self._finish(route, SubStatus.NO_MX_RECORD, NEGATIVE_TTL)

    async def _addresses(
        self, route: DomainRoute, name: str
    ) -> tuple[tuple[str, ...], float, bool]:
        """(addresses, ttl, definite): definite means an authoritative 'none', not an error."""
        for rdtype in ("A", "AAAA"):
            outcome = await self._query(name, rdtype)
            if outcome.nxdomain:
                route.records.append(f"{rdtype} {name}: NXDOMAIN")
                return (), NEGATIVE_TTL, True
            if outcome.error:
                route.records.append(f"{rdtype} {name}: {outcome.error}")
                return (), ERROR_TTL, False
            if outcome.rrset is not None and len(outcome.rrset):
                addresses = tuple(sorted(r.address for r in outcome.rrset))
                route.records.append(
                    f"{rdtype} {name}: {' '.join(addresses)} (ttl {outcome.rrset.ttl})"
                )
                return addresses, outcome.ttl, True
            route.records.append(f"{rdtype} {name}: no records")
        return (), NEGATIVE_TTL, True

    @staticmethod
    def _finish(route: DomainRoute, verdict: SubStatus | None, ttl: float) -> DomainRoute:
        route.verdict = verdict
        route.expires = time.monotonic() + max(ttl, 1.0)
        return route
