"""The verification engine: checks cheapest first, in the precedence of the README's list.

Work is shared across a run: one DNS lookup per domain (concurrent callers wait for the same
lookup), one catch-all probe per domain, one verification per distinct address. `verify` never
raises for any input; a surprise inside a check becomes an Unknown with the reason in the evidence.
Only a `UserError` (a setting the user must fix, such as an untrusted certificate) escapes: no
verdict of the run could be right until it is fixed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any, Protocol

from mapper_emailverify.engine import lists
from mapper_emailverify.engine.address_policy import classify, may_contact
from mapper_emailverify.engine.config import VerifierConfig
from mapper_emailverify.engine.dns_lookup import DnsClient, DomainRoute
from mapper_emailverify.engine.domain_knowledge import DomainKnowledge
from mapper_emailverify.engine.emailverify_api import EmailVerifyClient, RemoteAnswer
from mapper_emailverify.engine.errors import UserError
from mapper_emailverify.engine.hooks import DEADLINE, LEAVE_SLOT, ON_GREYLIST_WAIT
from mapper_emailverify.engine.host_limits import SharedHostLimits
from mapper_emailverify.engine.providers import identify
from mapper_emailverify.engine.result import Evidence, Result
from mapper_emailverify.engine.smtp.prober import Probe, SmtpProber
from mapper_emailverify.engine.syntax import Address, SyntaxProblem, parse
from mapper_emailverify.taxonomy import SubStatus

log = logging.getLogger(__name__)

DOMAIN_RUN = 5  # recipients of one domain scheduled together by verify_many
#: A verification still running after this many seconds (a tarpit, a silent MX) moves out of the
#: `concurrency` slots into the slow lane (`SLOW_LANE` times as many), so that a few percent of
#: hostile addresses cannot hold every slot while ordinary ones queue behind them.
SLOW_AFTER = 1.0
SLOW_LANE = 10
#: Shortest wait before asking a greylisting server again, whatever the settings say.
GREYLIST_MIN_WAIT = 0.5


def _domain_interleaved(items: list[object], run: int) -> list[int]:
    """Indices ordered as runs of up to `run` items per domain, domains taking turns."""
    seen: dict[str, int] = {}
    keys = []
    for index, item in enumerate(items):
        domain = item.rpartition("@")[2].strip().lower() if isinstance(item, str) else ""
        rank = seen.get(domain, 0)
        seen[domain] = rank + 1
        keys.append((rank // run, domain, index))
    return [index for _, _, index in sorted(keys)]


_BOUNCED = "hard-bounce history: this address bounced before"


def _decide(substatus: SubStatus, evidence: Evidence, rule: str) -> Result:
    """A verdict whose evidence names the rule that decided it."""
    evidence.note(rule)
    evidence.decided_by = rule
    return Result.of(substatus, evidence)


def _retrieved(task: asyncio.Future[Result]) -> None:
    if not task.cancelled():
        task.exception()


class Resolver(Protocol):
    """Where a domain's mail goes (`dns_lookup.DnsClient`)."""

    async def route(self, domain: str) -> DomainRoute: ...


class Prober(Protocol):
    """What a domain's mail servers say about a mailbox (`smtp.prober.SmtpProber`)."""

    @property
    def smtp_unavailable(self) -> bool: ...

    @property
    def setup_confirmed(self) -> bool: ...

    async def probe(self, route: DomainRoute, address: str, needs_utf8: bool = False) -> Probe: ...

    def reset_loop(self) -> None: ...

    async def aclose(self) -> None: ...


class RemoteChecker(Protocol):
    """A verification service asked instead of our own probes (`emailverify_api`)."""

    async def check(self, address: str) -> RemoteAnswer: ...

    def reset_loop(self) -> None: ...

    async def aclose(self) -> None: ...


class Verifier:
    """Verify addresses: `await verifier.verify(address)`, `await verifier.verify_many(items)`.

    The collaborators are built from the config unless given: tests and embedders pass their own
    `dns`, `prober` or `remote` (the remote checker is used when `backend` is `emailverify`).
    `knowledge` keeps what is learned of domains across runs; `host_limits` shares each mail
    host's caps with the other workers on this egress IP (the prober closes it).
    """

    def __init__(
        self,
        config: VerifierConfig | Mapping[str, Any] | None = None,
        *,
        dns: Resolver | None = None,
        prober: Prober | None = None,
        remote: RemoteChecker | None = None,
        knowledge: DomainKnowledge | None = None,
        host_limits: SharedHostLimits | None = None,
    ) -> None:
        self.config = (
            config if isinstance(config, VerifierConfig) else VerifierConfig.from_settings(config)
        )
        self._disposable = lists.DisposableDomains(self.config.extra_disposable_domains)
        self._hard_bounces: set[str] = set()
        self.add_hard_bounces(self.config.hard_bounces)
        self._dns: Resolver = dns or DnsClient(self.config.dns_nameservers, self.config.dns_timeout)
        #: Events of the run worth a figure in the report (catch-all probes, greylist retries).
        self.counters: collections.Counter[str] = collections.Counter()
        self._prober: Prober = prober or SmtpProber(
            self.config, knowledge=knowledge, counters=self.counters, shared=host_limits
        )
        self._remote: RemoteChecker | None = None
        if self.config.uses_remote:
            self._remote = remote or EmailVerifyClient(self.config)
        self._routes: dict[str, DomainRoute] = {}
        self._results: dict[str, Result] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._route_lookups: dict[str, asyncio.Future[DomainRoute]] = {}
        self._in_flight: dict[str, asyncio.Future[Result]] = {}
        self._limit: asyncio.Semaphore | None = None
        self._slow: asyncio.Semaphore | None = None

    # -- public API ------------------------------------------------------------------------------

    def add_hard_bounces(self, addresses: Iterable[str]) -> None:
        """Addresses known to have hard-bounced (suppressions, earlier results)."""
        for address in addresses:
            if isinstance(address, str) and address.strip():
                try:
                    self._hard_bounces.add(parse(address.strip()).key)
                except SyntaxProblem:
                    self._hard_bounces.add(address.strip().casefold())

    async def verify(self, address: object) -> Result:
        """The verdict for one address. Raises only `UserError` (and cancellation)."""
        started = time.monotonic()
        evidence = Evidence(
            input=address if isinstance(address, str) else None, backend=self.config.backend
        )
        try:
            self._bind_loop()
            result = await self._verify(address, evidence)
        except (asyncio.CancelledError, UserError):
            raise
        except Exception as exc:  # an engine bug must not take a pipeline down
            log.debug("verification failed unexpectedly: %r", exc, exc_info=True)
            result = _decide(
                SubStatus.SMTP_CONNECTION_FAILED,
                evidence,
                f"internal error: {type(exc).__name__}",
            )
        result.evidence.timings.setdefault("total_s", round(time.monotonic() - started, 4))
        return result

    async def verify_many(self, addresses: Iterable[object]) -> list[Result]:
        """Verdicts in input order, `concurrency` verifications in flight.

        Work is scheduled in small per-domain runs, domains interleaved, so that recipients of a
        domain are pending together and share SMTP sessions while different mail hosts work in
        parallel. An address waiting for a greylist retry does not count: the next one starts.
        """
        items = list(addresses)
        results: list[Result | None] = [None] * len(items)
        queue = iter((index, items[index]) for index in _domain_interleaved(items, DOMAIN_RUN))
        waiting: set[asyncio.Task[None]] = set()  # verifications waiting for a greylist retry

        async def one(index: int, address: object) -> None:
            results[index] = await self.verify(address)

        async def worker() -> None:
            for index, address in queue:
                parked = asyncio.Event()
                token = ON_GREYLIST_WAIT.set(parked.set)
                try:  # the task copies the context now: its greylist wait sets `parked`
                    task = asyncio.ensure_future(one(index, address))
                finally:
                    ON_GREYLIST_WAIT.reset(token)
                parked_wait = asyncio.ensure_future(parked.wait())
                try:
                    await asyncio.wait({task, parked_wait}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    parked_wait.cancel()
                if not task.done():  # waiting for a greylisting server: take the next address
                    waiting.add(task)
                    task.add_done_callback(waiting.discard)

        try:
            await asyncio.gather(
                *(worker() for _ in range(min(self.config.concurrency, len(items)) or 1))
            )
            while waiting:
                await asyncio.gather(*list(waiting))
        finally:
            for task in list(waiting):
                task.cancel()
        return [result for result in results if result is not None]

    def verify_many_sync(self, addresses: Iterable[object]) -> list[Result]:
        """For synchronous callers (one event loop per call; caches survive across calls)."""
        return asyncio.run(self._run_and_release(addresses))

    async def aclose(self) -> None:
        await self._prober.aclose()
        if self._remote is not None:
            await self._remote.aclose()

    async def __aenter__(self) -> Verifier:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    @property
    def smtp_unavailable(self) -> bool:
        """True once this host was found unable to reach any mail server on the SMTP port."""
        return self._prober.smtp_unavailable

    @property
    def setup_confirmed(self) -> bool:
        """Whether verdicts now describe the addresses, not the probe's own setup: a mail server
        judged a recipient, or refusals of the probe stayed with too few hosts to matter (see
        `smtp/setup_watch.py`). Always true when no SMTP probe is made."""
        if not self.config.uses_builtin or not self.config.smtp_check:
            return True
        return self._prober.setup_confirmed

    # -- plumbing --------------------------------------------------------------------------------

    async def _run_and_release(self, addresses: Iterable[object]) -> list[Result]:
        try:
            return await self.verify_many(addresses)
        finally:
            await self.aclose()

    def _bind_loop(self) -> None:
        """Futures and semaphores belong to one event loop; learned facts outlive it."""
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return
        self._loop = loop
        self._route_lookups.clear()
        self._in_flight.clear()
        self._limit = asyncio.Semaphore(self.config.concurrency)
        self._slow = asyncio.Semaphore(self.config.concurrency * SLOW_LANE)
        self._prober.reset_loop()
        if self._remote is not None:
            self._remote.reset_loop()

    async def _verify(self, address: object, evidence: Evidence) -> Result:
        if address is None:
            return _decide(SubStatus.NO_EMAIL, evidence, "no address")
        if not isinstance(address, str):
            return _decide(
                SubStatus.INVALID_SYNTAX, evidence, f"not a string ({type(address).__name__})"
            )
        text = address.strip()
        if not text:
            return _decide(SubStatus.NO_EMAIL, evidence, "empty address")
        try:
            parsed = parse(text)
        except SyntaxProblem as problem:
            return _decide(SubStatus.INVALID_SYNTAX, evidence, f"syntax: {problem}")
        key = parsed.key
        if key in self._results:
            return self._for_input(self._results[key], address)
        if key in self._in_flight:
            return self._for_input(await asyncio.shield(self._in_flight[key]), address)
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            result = await self._in_a_slot(self._within_deadline(parsed, evidence))
            if result.substatus is SubStatus.GREYLISTED:
                result = await self._after_greylisting(parsed, result)
        except UserError as error:
            future.set_exception(error)
            future.exception()  # retrieved: the waiters get it, no "never retrieved" warning
            raise
        except Exception as exc:  # keep the waiters of this address going too
            log.debug("verification failed unexpectedly: %r", exc, exc_info=True)
            result = _decide(
                SubStatus.SMTP_CONNECTION_FAILED,
                evidence,
                f"internal error: {type(exc).__name__}",
            )
        except BaseException:
            future.cancel()
            raise
        finally:
            self._in_flight.pop(key, None)
        self._remember(key, result)
        future.set_result(result)
        return result

    async def _after_greylisting(self, address: Address, result: Result) -> Result:
        """Ask a greylisting server again later in the run, as a mail server would retry: after
        the delay it named, else `greylist_retry_after`, for at most `greylist_max_wait` in all.
        The wait holds no `concurrency` slot. Greylisting keys on (client IP, sender, recipient),
        so the retry goes out the same way with the same `mail_from`."""
        config = self.config
        if config.greylist_max_wait <= 0 or not result.evidence.decided_by.startswith("smtp"):
            return result
        self.counters["greylisted"] += 1
        first = time.monotonic()
        retries = 0
        parked = False
        trail: list[str] = []
        while result.substatus is SubStatus.GREYLISTED:
            named = result.evidence.retry_after
            delay = named * 1.1 + 1.0 if named else config.greylist_retry_after
            delay = max(delay, GREYLIST_MIN_WAIT)
            if time.monotonic() - first + delay > config.greylist_max_wait:
                break
            trail.append(
                f"greylisted ({result.evidence.decisive_reply or result.evidence.decided_by}); "
                f"asked again after {delay:.0f} s"
                + (" (the delay the server named)" if named else " (greylist_retry_after)")
            )
            if not parked:
                parked = True
                on_wait = ON_GREYLIST_WAIT.get()
                if on_wait is not None:
                    on_wait()
            await asyncio.sleep(delay)
            retries += 1
            evidence = Evidence(input=result.evidence.input, backend=self.config.backend)
            result = await self._in_a_slot(self._within_deadline(address, evidence))
        if retries:
            result.evidence.steps[:0] = trail
            result.evidence.greylist_retries = retries
            if result.substatus is not SubStatus.GREYLISTED:
                self.counters["greylist_resolved"] += 1
        return result

    async def _in_a_slot(self, work: Coroutine[Any, Any, Result]) -> Result:
        """Run one verification in one of the `concurrency` slots; after `SLOW_AFTER` seconds it
        moves to the slow lane (when that has room) and frees its slot for the next address. A
        verification that waits in a mail host's queue leaves its slot (`hooks.leave_slot`):
        queued recipients are what keeps a host's sessions full, and they cost only a future."""
        assert self._limit is not None and self._slow is not None
        limit, slow = self._limit, self._slow
        await limit.acquire()
        held: list[asyncio.Semaphore] = [limit]  # the slot held: none once it left

        def leave() -> None:
            if held:
                held.pop().release()

        token = LEAVE_SLOT.set(leave)
        try:
            task = asyncio.ensure_future(work)  # the task's context carries `leave`
        finally:
            LEAVE_SLOT.reset(token)
        task.add_done_callback(_retrieved)  # a run stopping may leave nobody awaiting it
        try:
            slow_after = min(SLOW_AFTER, self.config.smtp_timeout / 4)
            done, _ = await asyncio.wait({task}, timeout=slow_after)
            if not done and held == [limit] and not slow.locked():
                await slow.acquire()  # free now: returns at once
                limit.release()
                held[0] = slow
            return await task
        finally:
            if not task.done():  # cancelled (the run is stopping): let it unwind before we return
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            leave()

    async def _within_deadline(self, address: Address, evidence: Evidence) -> Result:
        """`_verify_address`, cut at `verification_deadline` whatever hosts and replies it met."""
        deadline = self.config.deadline
        try:
            async with asyncio.timeout(deadline) as timeout:
                DEADLINE.set(timeout)
                return await self._verify_address(address, evidence)
        except TimeoutError:
            return _decide(
                SubStatus.SMTP_TIMEOUT,
                evidence,
                f"verification_deadline reached: no answer within {deadline:g} s",
            )

    def _remember(self, key: str, result: Result) -> None:
        self._results[key] = result
        if len(self._results) > self.config.result_memory:
            self._results.pop(next(iter(self._results)))

    @staticmethod
    def _for_input(shared: Result, address: str) -> Result:
        evidence = dataclasses.replace(
            shared.evidence,
            input=address,
            steps=[*shared.evidence.steps, "same address verified earlier in this run"],
        )
        return Result(shared.status, shared.substatus, evidence)

    async def _verify_address(self, address: Address, evidence: Evidence) -> Result:
        evidence.normalized = address.normalized
        evidence.local_part = address.local_part
        evidence.domain = address.domain
        evidence.role = lists.is_role(address.local_part)
        evidence.free = lists.is_free(address.ascii_domain)
        evidence.did_you_mean = lists.did_you_mean(address.ascii_domain)
        evidence.note(
            f"syntax ok: {address.normalized}"
            + (
                f" (domain {address.ascii_domain})"
                if address.ascii_domain != address.domain
                else ""
            )
        )
        listed = self._disposable.match(address.ascii_domain)
        if listed:
            evidence.disposable = True
            return _decide(
                SubStatus.DISPOSABLE_DOMAIN,
                evidence,
                f"disposable: {address.ascii_domain} is on the disposable list ({listed})",
            )
        if self._remote is not None and not self.config.uses_builtin:
            return await self._verify_remote(address, evidence)
        return await self._verify_builtin(address, evidence)

    def _accepted(self, address: Address, evidence: Evidence) -> Result:
        if evidence.role:
            evidence.decided_by += f"; role account ({address.local_part}@ is a role name)"
            return Result.of(SubStatus.ROLE_BASED, evidence)
        return Result.of(SubStatus.MAILBOX_EXISTS, evidence)

    async def _verify_remote(self, address: Address, evidence: Evidence) -> Result:
        if address.key in self._hard_bounces:
            return _decide(SubStatus.HARD_BOUNCE_HISTORY, evidence, _BOUNCED)
        assert self._remote is not None
        started = time.monotonic()
        answer = await self._remote.check(address.normalized)
        evidence.timings["remote_s"] = round(time.monotonic() - started, 4)
        evidence.note(answer.trail)
        evidence.decided_by = answer.trail
        if answer.substatus is None or answer.substatus is SubStatus.ROLE_BASED:
            return (
                self._accepted(address, evidence)
                if answer.substatus is None
                else Result.of(SubStatus.ROLE_BASED, evidence)
            )
        if answer.substatus is SubStatus.CATCH_ALL:
            evidence.catch_all = True
        return Result.of(answer.substatus, evidence)

    async def _verify_builtin(self, address: Address, evidence: Evidence) -> Result:
        started = time.monotonic()
        route = await self._route(address.ascii_domain)
        evidence.timings["dns_s"] = round(time.monotonic() - started, 4)
        evidence.steps.extend(f"dns: {line}" for line in route.records)
        evidence.mx_hosts = route.mx_names
        evidence.implicit_mx = route.implicit
        if route.verdict is not None:
            last = route.records[-1] if route.records else str(route.verdict)
            evidence.decided_by = f"dns: {last}"
            return Result.of(route.verdict, evidence)
        if address.key in self._hard_bounces:
            return _decide(SubStatus.HARD_BOUNCE_HISTORY, evidence, _BOUNCED)
        rule = identify(address.ascii_domain, route.mx_names)
        evidence.provider = rule.name if rule is not None else None
        if self._remote is not None and self.config.backend_for(evidence.provider) == "emailverify":
            evidence.backend = "emailverify"
            evidence.note(f"backend_by_provider: {evidence.provider} goes to emailverify")
            return await self._verify_remote(address, evidence)
        if not self.config.smtp_check:
            return _decide(
                SubStatus.SMTP_UNAVAILABLE, evidence, "smtp: skipped (smtp_check is off)"
            )
        if rule is not None and not rule.rcpt_is_evidence:
            return _decide(
                SubStatus.PROVIDER_UNVERIFIABLE,
                evidence,
                f"provider rule: {rule.name} accepts every recipient at RCPT and bounces later",
            )
        hidden = self._not_public(route)
        if hidden:
            return _decide(
                SubStatus.MX_NOT_PUBLIC,
                evidence,
                f"mx not public: {hidden} (not contacted"
                + ("" if self.config.allow_private_mx else "; allow_private_mx is off")
                + ")",
            )
        started = time.monotonic()
        probe = await self._prober.probe(
            route, address.smtp_address, needs_utf8=address.ascii_email is None
        )
        evidence.timings["smtp_s"] = round(time.monotonic() - started, 4)
        evidence.smtp_replies = list(probe.replies)
        evidence.mx_tried = list(probe.hosts_tried)
        evidence.catch_all = probe.catch_all
        evidence.decided_by = f"smtp: {probe.rule}" if probe.rule else "smtp"
        evidence.decisive_reply = str(probe.decisive) if probe.decisive is not None else None
        evidence.retry_after = probe.retry_after
        if probe.catch_all:
            evidence.note("smtp: the domain accepts a random mailbox (catch-all)")
            return Result.of(SubStatus.CATCH_ALL, evidence)
        if probe.substatus is None:
            evidence.note("smtp: recipient accepted")
            return self._accepted(address, evidence)
        evidence.note(f"smtp: {probe.substatus}")
        if probe.status is not None:
            return Result(probe.status, probe.substatus, evidence)
        return Result.of(probe.substatus, evidence)

    def _not_public(self, route: DomainRoute) -> str:
        """Why none of the route's addresses may be dialled ("" when one may)."""
        pairs = [(host.name, ip) for host in route.hosts for ip in host.addresses]
        if any(may_contact(ip, allow_private=self.config.allow_private_mx) for _, ip in pairs):
            return ""
        return "; ".join(f"{name} {ip} is {classify(ip)}" for name, ip in pairs[:3]) or "no address"

    async def _route(self, domain: str) -> DomainRoute:
        cached = self._routes.get(domain)
        if cached is not None and cached.expires > time.monotonic():
            return cached
        pending = self._route_lookups.get(domain)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[DomainRoute] = asyncio.get_running_loop().create_future()
        self._route_lookups[domain] = future
        try:
            route = await self._dns.route(domain)
        except BaseException as exc:
            future.cancel()
            self._route_lookups.pop(domain, None)
            raise exc
        self._routes[domain] = route
        if len(self._routes) > max(self.config.result_memory, 1000):
            self._routes.pop(next(iter(self._routes)))  # the oldest: bounded like the verdicts
        self._route_lookups.pop(domain, None)
        future.set_result(route)
        return route
