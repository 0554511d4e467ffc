"""Mailbox probing over SMTP, shaped for throughput and politeness.

Per domain, recipients waiting for an answer are queued and drained by a few workers; each worker
holds one session (MX failover, EHLO, STARTTLS, MAIL FROM) and asks several RCPTs in it,
reconnecting on "too many recipients". A session serves one domain, so a transaction never mixes
recipient domains (Gmail refuses that: "451 4.3.0 Multiple destination domains per transaction").
The first session of a domain first asks about a random mailbox: a domain that accepts it is
catch-all, remembered (for the run, and across runs through a `DomainKnowledge` store), and its
other recipients need no RCPT at all. Each mail host (by IP) gets at most `max_connections_per_mx`
sessions at once, whatever the global concurrency; workers that probe from one egress IP share
those caps through a `SharedHostLimits` store (`host_limits`).

The provider serving the domain (`providers.py`) shapes the conversation: how many recipients a
session carries (Outlook.com: one), whether the catch-all probe is worth its RCPT (not on Gmail or
Outlook.com), and how its replies read. The random mailbox is the same for a domain all run long, so
a greylisting server that deferred it lets it through when it is asked again after the delay.

Every reply is read by `replies` (what it is about, and the rule that decided); a refusal of the
probe itself (our sender, IP or rate) goes to the `SetupWatch`, which holds it until it knows
whether that host refuses us or every host does (then the run stops, see `setup_watch`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import itertools
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from mapper_emailverify.engine.address_policy import classify, may_contact, network_of
from mapper_emailverify.engine.config import VerifierConfig
from mapper_emailverify.engine.dns_lookup import DomainRoute
from mapper_emailverify.engine.domain_knowledge import DomainFacts, DomainKnowledge, mx_digest
from mapper_emailverify.engine.hooks import deadline_paused, leave_slot, stop_deadline
from mapper_emailverify.engine.host_limits import SharedHostLimits
from mapper_emailverify.engine.providers import ProviderRule, identify
from mapper_emailverify.engine.result import SmtpReply
from mapper_emailverify.engine.smtp.port25_watch import Port25Watch
from mapper_emailverify.engine.smtp.replies import (
    ABOUT_US,
    VERDICT_OF,
    Outcome,
    Reading,
    Reply,
    named_delay,
    rate_limited,
    read_rcpt,
    read_refusal,
)
from mapper_emailverify.engine.smtp.session import SmtpFailure, SmtpSession, Timeouts
from mapper_emailverify.engine.smtp.setup_watch import MAILBOX_LEVEL, SetupWatch
from mapper_emailverify.taxonomy import Status, SubStatus

log = logging.getLogger(__name__)

#: Sessions one recipient may need (reconnects after a 452, a dropped connection, a busy host).
MAX_ATTEMPTS = 3
#: Addresses dialled for one domain per attempt, over all its MX hosts in preference order, and
#: connections that may fail after connecting (banner, EHLO, MAIL) before the attempt gives up.
#: RFC 5321 5.1 lets a client cap both; these are Postfix's smtp_mx_address_limit and
#: smtp_mx_session_limit. Without them 30 silent MX hosts cost 30 timeouts per address.
MX_ADDRESS_LIMIT = 5
MX_SESSION_LIMIT = 2
#: Addresses the prober remembers having dialled (for the evidence of tests and embedders).
DIAL_LOG = 1000
#: Recipients one connection carries over all its transactions (domains), whatever else allows.
SESSION_RCPT_LIMIT = 100
#: The first pause a host that asks us to slow down gets, doubled on each request, up to the last.
BACKOFF_FIRST, BACKOFF_LAST = 10.0, 600.0
#: Recipients a host may get at once above its steady rate.
RATE_BURST = 10
#: The least share of `max_rcpt_per_minute_per_mx` a host keeps after asking us to slow down.
SLOWEST_FACTOR = 1 / 16
#: A host paused for longer than this sends its new recipients to the in-run retry at once.
PAUSE_DEFERS = 2.0
#: Deadlines a recipient may wait in its domain's queue with its own deadline stopped.
QUEUE_PATIENCE = 20


@dataclass
class Probe:
    """What SMTP said about one recipient. `substatus` None means accepted."""

    substatus: SubStatus | None
    catch_all: bool | None = None
    status: Status | None = None  # set when the reply gave a verdict (4xx full: Unknown)
    replies: list[SmtpReply] = field(default_factory=list)
    hosts_tried: list[str] = field(default_factory=list)
    #: The rule that decided, and the reply it read (None when no reply decided: a timeout...).
    rule: str = ""
    decisive: SmtpReply | None = None
    #: The refusal was about the probe itself (our sender, IP or rate), not the mailbox.
    about_us: bool = False
    #: A deferral that named its delay ("try again in 5 minutes"), in seconds.
    retry_after: float | None = None


_CATCH_ALL_KNOWN = "catch-all: the domain accepted a random mailbox earlier in this run"


def _ruled(reading: Reading) -> str:
    return f"{reading.family}: {reading.rule}"


@dataclass
class _Failed:
    """A mail host that would not let us ask about a recipient, and why."""

    host: str
    failure: SmtpFailure | None
    refusal: Reply | None
    stage: str
    reply: SmtpReply | None  # the refusal as evidence


#: Which refusal explains a domain best when its hosts refused differently: about us first.
_REFUSAL_RANK = {
    Outcome.SENDER: 0,
    Outcome.BLOCKED: 1,
    Outcome.RATE: 2,
    Outcome.DEFERRED: 3,
    Outcome.REFUSED: 4,
    Outcome.UNAVAILABLE: 5,
}


@dataclass
class _Pending:
    address: str
    needs_utf8: bool
    future: asyncio.Future[Probe]
    attempts: int = 0
    #: Restarts the verification's deadline clock, stopped while the recipient waits in the queue
    #: for a session (a connection slot of the host is our politeness, not the server's time).
    resume: Callable[[], None] | None = None

    def taken(self) -> None:
        """A session takes the recipient: from now on the server's time counts."""
        resume, self.resume = self.resume, None
        if resume is not None:
            resume()


class _OpeningRefused(Exception):
    """RSET or MAIL FROM sent in front of RCPTs was refused: the RCPT replies are no verdicts."""


def _answer(item: _Pending, probe: Probe) -> None:
    """Resolve a recipient's wait, unless its verification already ended (deadline, cancel)."""
    if not item.future.done():
        item.future.set_result(probe)


def _describe(failure: SmtpFailure | None, refusal: Reply | None) -> str:
    if refusal is not None:
        return f"{refusal.code} {refusal.text[:80]}"
    return str(failure) if failure is not None else "connected"


@dataclass
class _SessionState:
    """One connection's budget: its deadline, recipients sent over all its transactions, and where
    in its transcript the setup and the current transaction start (for each domain's evidence)."""

    deadline: float
    base: int  # transcript length after banner .. first MAIL FROM
    start: int  # where the current transaction's RSET begins (== base for the first one)
    sent: int = 0
    session_limit: int = SESSION_RCPT_LIMIT
    serving: _Domain | None = None  # the domain of the current transaction
    in_flight: list[_Pending] = field(default_factory=list)  # RCPTs sent, replies not read
    #: RSET and MAIL FROM of the transaction, not sent yet: they go out in the group of its
    #: first RCPT (RFC 2920), one round trip for a domain instead of two.
    opening: list[str] = field(default_factory=list)

    def room(self) -> int:
        return max(self.session_limit - self.sent, 0)


class _HostState:
    """One mail host (by IP): its recipient rate (GCRA: each recipient books the next slot of
    `60 / rate` seconds), the pause it asked for, and whether its pipelined replies can be trusted.
    Kept for the run, across event loops."""

    __slots__ = ("backoff", "factor", "no_pipelining", "paused_until", "rset_works", "tat")

    def __init__(self) -> None:
        self.tat = 0.0  # when the next recipient is due at the steady rate (monotonic seconds)
        self.factor = 1.0  # share of `max_rcpt_per_minute_per_mx` (halved when the host asks)
        self.paused_until = 0.0
        self.backoff = 0.0
        self.no_pipelining = False
        #: An RSET was answered 250 here: RCPTs may then share its group (a server that refused
        #: it would add them to the previous domain's transaction).
        self.rset_works = False

    def pace(self, per_minute: int) -> tuple[float, int]:
        """Seconds between two recipients at the steady rate, and the recipients of the burst.
        The steady rate leaves room for the burst, so no 60-second window holds more than
        `per_minute` recipients."""
        burst = min(RATE_BURST, max(per_minute // 10, 1))
        return 60.0 / (max(per_minute - burst, 1) * self.factor), burst

    def reserve(self, now: float, per_minute: int) -> float:
        """Book one recipient; the seconds to wait before it may go."""
        interval, burst = self.pace(per_minute)
        self.tat = max(self.tat, now, self.paused_until) + interval
        return max(0.0, self.tat - now - burst * interval)

    def slow_down(self, now: float) -> None:
        """The host answered with a rate or reputation deferral: half the rate, and a pause."""
        self.factor = max(self.factor / 2, SLOWEST_FACTOR)
        self.backoff = min(max(self.backoff * 2, BACKOFF_FIRST), BACKOFF_LAST)
        self.paused_until = max(self.paused_until, now + self.backoff)


class _Domain:
    """The queue and shared knowledge (catch-all, sticky failure) for one domain during a run."""

    def __init__(self, route: DomainRoute) -> None:
        self.route = route
        self.rule: ProviderRule | None = identify(route.domain, route.mx_names)
        self.mx_digest = mx_digest(route.mx_names)
        self.pending: collections.deque[_Pending] = collections.deque()
        self.workers = 0
        self.catch_all: bool | None = None
        #: When the random-address probe is due (monotonic seconds): 0 now, inf settled (answered,
        #: skipped or given up), later after a deferral (asked again once the delay passed).
        self.catch_all_due = 0.0
        self.greylisting = False  # a deferral that reads as greylisting was seen
        self.probing: asyncio.Event | None = None  # set when the session doing the probe is done
        self.sticky: Probe | None = None  # a domain-level failure answers every later recipient
        self.setup_replies: list[SmtpReply] = []
        self.rcpt_limit: int | None = None  # learned from a "452 4.5.3 too many recipients"
        self.arrived = asyncio.Event()  # a recipient joined the queue (wakes a lingering session)
        #: The first address a session for this domain dials: domains sharing it share sessions.
        self.lane_ip: str | None = None

    def end_probe(self) -> None:
        """The session asking the random mailbox is done with it: its waiters go on."""
        if self.probing is not None:
            self.probing.set()
            self.probing = None

    def rcpt_cap(self) -> int:
        """Recipients one connection may carry for this domain: the provider's rule or what the
        server taught us (a limit learned from a 452 is kept per connection, as Outlook.com and
        many servers count it)."""
        rule = self.rule.rcpt_per_session if self.rule is not None else None
        return min((cap for cap in (rule, self.rcpt_limit) if cap), default=SESSION_RCPT_LIMIT)


class SmtpProber:
    """Answers `probe(route, address)` using shared sessions per domain."""

    def __init__(
        self,
        config: VerifierConfig,
        *,
        knowledge: DomainKnowledge | None = None,
        counters: collections.Counter[str] | None = None,
        shared: SharedHostLimits | None = None,
    ) -> None:
        self.config = config
        self.knowledge = knowledge
        #: Caps shared with the workers on this egress IP (closed by `aclose`).
        self.shared = shared
        #: catch_all_probes, catch_all_skipped, catch_all_cached (see `Verifier.counters`).
        self.counters: collections.Counter[str] = (
            counters if counters is not None else collections.Counter()
        )
        self._probe_secret = secrets.token_bytes(16)  # the run's random mailboxes derive from it
        self._tls_learned: set[str] = set()
        self.timeouts = Timeouts(config.connect_timeout, config.banner_timeout, config.smtp_timeout)
        self.watch = Port25Watch(
            config.port25_probe_hosts, dial=self._path_works, candidates=self._other_hosts
        )
        self.setup = SetupWatch(
            config.setup_refusal_providers,
            config.setup_decision_grace,
            config.sender,
            config.helo_hostname,
        )
        self._memory = max(config.result_memory, 1000)  # domains and hosts remembered
        self._domains: dict[str, _Domain] = {}  # insertion order: the oldest are forgotten first
        self._host_slots: dict[str, asyncio.Semaphore] = {}
        self._hosts: dict[str, _HostState] = {}  # rate, pauses, pipelining: outlive the loop
        #: Domains with recipients waiting, by the first address their sessions dial.
        self._lanes: dict[str, collections.OrderedDict[str, _Domain]] = {}
        self._host_users: dict[str, int] = {}  # sessions holding or waiting for each host's slot
        #: The addresses dialled, newest last (bounded): what a test checks before any packet.
        self.dialled: collections.deque[str] = collections.deque(maxlen=DIAL_LOG)
        self._no_tls: set[str] = set()
        self._proxy_warned = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def smtp_unavailable(self) -> bool:
        """True once this host was found unable to reach any mail server on the SMTP port."""
        return self.watch.unavailable

    def reset_loop(self) -> None:
        """Forget loop-bound state (queues, semaphores); keep what was learned (catch-all, ...)."""
        for name, domain in list(self._domains.items()):
            learned = _Domain(domain.route)
            learned.catch_all, learned.catch_all_due = domain.catch_all, domain.catch_all_due
            learned.greylisting = domain.greylisting
            learned.sticky, learned.setup_replies = domain.sticky, domain.setup_replies
            self._domains[name] = learned
        self._host_slots.clear()
        self._lanes.clear()
        if self.shared is not None:
            self.shared.reset_loop()
        self.watch.reset_loop()
        self.setup.reset_loop()

    @property
    def setup_confirmed(self) -> bool:
        """A mail server judged a recipient (our probe works), or refusals of it stayed local."""
        return self.setup.confirmed

    async def probe(self, route: DomainRoute, address: str, needs_utf8: bool = False) -> Probe:
        """What the domain's mail servers say about `address`.

        Raises `ProbeSetupError` when mail servers refuse the probe itself (see `setup_watch`).
        """
        if self.setup.failure is not None:
            raise self.setup.failure
        probe = await self._probe(route, address, needs_utf8)
        if probe.about_us:
            await self.setup.settle()
        return probe

    async def _probe(self, route: DomainRoute, address: str, needs_utf8: bool) -> Probe:
        if self.watch.unavailable:
            return Probe(SubStatus.SMTP_UNAVAILABLE, rule="port 25 unreachable from this host")
        domain = self._domains.get(route.domain)
        if domain is None or (
            domain.route is not route and domain.route.expires < time.monotonic()
        ):
            domain = self._domains[route.domain] = self._new_domain(route, domain)
            self._forget_idle()
        elif next(reversed(self._domains)) != route.domain:  # most recently used last
            self._domains[route.domain] = self._domains.pop(route.domain)
        known = self._known_answer(domain)
        if known is not None:
            return known
        if domain.lane_ip is not None:
            deferred = await self._admit(domain.lane_ip)
            if deferred is not None:
                return deferred
            known = self._known_answer(domain)  # learned while this recipient waited its turn
            if known is not None:
                return known
        item = _Pending(address, needs_utf8, asyncio.get_running_loop().create_future())
        domain.pending.append(item)
        domain.arrived.set()
        if domain.lane_ip is not None:
            self._lanes.setdefault(domain.lane_ip, collections.OrderedDict())[route.domain] = domain
        if domain.workers < self.config.max_connections_per_mx and (
            domain.workers == 0 or len(domain.pending) > domain.workers
        ):
            self._start_worker(domain)
        return await self._wait(item)

    async def _wait(self, item: _Pending) -> Probe:
        """The recipient's answer; its verification's deadline does not run while it is queued
        (for at most `QUEUE_PATIENCE` deadlines: a queue that never moves is no politeness),
        and it holds no `concurrency` slot."""
        leave_slot()
        resume = stop_deadline()
        if resume is None:
            return await item.future
        item.resume = resume
        try:
            return await asyncio.wait_for(
                asyncio.shield(item.future), QUEUE_PATIENCE * self.config.deadline
            )
        except TimeoutError:
            item.taken()  # the clock runs again: the deadline ends the wait
            return await item.future
        finally:
            item.taken()  # answered from the queue (a domain-wide answer): the clock runs again

    @staticmethod
    def _known_answer(domain: _Domain) -> Probe | None:
        """The answer every recipient of the domain gets without a RCPT: a failure of the whole
        domain for this run, or catch-all."""
        if domain.sticky is not None:
            return domain.sticky
        if domain.catch_all:
            return Probe(
                None, catch_all=True, replies=list(domain.setup_replies), rule=_CATCH_ALL_KNOWN
            )
        return None

    def _start_worker(self, domain: _Domain) -> None:
        domain.workers += 1
        task = asyncio.create_task(self._worker(domain))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _requeue(self, domain: _Domain, items: list[_Pending]) -> None:
        """Put recipients back at the head of their domain's queue, with a worker to serve them
        (a session shared from another domain may have taken them after their worker left)."""
        for item in reversed(items):
            if not item.future.done():
                domain.pending.appendleft(item)
        if domain.pending and domain.workers == 0 and domain.sticky is None:
            self._start_worker(domain)

    def _new_domain(self, route: DomainRoute, old: _Domain | None) -> _Domain:
        """A domain's queue, starting from what is known of it: this run's earlier route when the
        MX set is the same, else the knowledge store's facts learned on the same MX set."""
        domain = _Domain(route)
        domain.lane_ip = next(
            (
                ip
                for host in route.hosts
                for ip in host.addresses
                if may_contact(ip, allow_private=self.config.allow_private_mx)
            ),
            None,
        )
        if domain.rule is not None and not domain.rule.catch_all_probe:
            domain.catch_all_due = float("inf")  # the provider has no catch-all to find
            self.counters["catch_all_skipped"] += 1
        if old is not None and old.mx_digest == domain.mx_digest:
            domain.catch_all, domain.catch_all_due = old.catch_all, old.catch_all_due
            domain.greylisting = old.greylisting
            return domain
        facts = self._recall(route.domain)
        if facts is not None and facts.mx_digest == domain.mx_digest:
            domain.greylisting = facts.greylisting
            if facts.catch_all is not None and domain.catch_all_due != float("inf"):
                domain.catch_all, domain.catch_all_due = facts.catch_all, float("inf")
                self.counters["catch_all_cached"] += 1
        return domain

    def _recall(self, name: str) -> DomainFacts | None:
        if self.knowledge is None:
            return None
        try:
            return self.knowledge.domain(name)
        except Exception as exc:  # a store must not cost a verdict
            log.debug("domain knowledge read failed: %r", exc)
            return None

    def _learn(self, domain: _Domain) -> None:
        """Tell the store what this run found out about the domain."""
        if self.knowledge is None:
            return
        facts = DomainFacts(
            mx_digest=domain.mx_digest,
            provider=domain.rule.name if domain.rule is not None else None,
            catch_all=domain.catch_all,
            greylisting=domain.greylisting,
            learned_at=time.time(),
        )
        try:
            self.knowledge.learn_domain(domain.route.domain, facts)
        except Exception as exc:
            log.debug("domain knowledge write failed: %r", exc)

    def _learn_tls(self, host: str, works: bool) -> None:
        if self.knowledge is None or host in self._tls_learned:
            return
        self._tls_learned.add(host)
        try:
            self.knowledge.learn_tls(host, works)
        except Exception as exc:
            log.debug("domain knowledge write failed: %r", exc)

    def _tls_known_broken(self, host: str) -> bool:
        if self.knowledge is None:
            return False
        try:
            return self.knowledge.tls_works(host) is False
        except Exception as exc:
            log.debug("domain knowledge read failed: %r", exc)
            return False

    def _catch_all_address(self, domain: str) -> str:
        """The random mailbox asked for `domain`: unguessable, and the same all run long (a
        greylisting server lets a repeated (client, sender, recipient) through after its delay)."""
        digest = hmac.new(self._probe_secret, domain.encode("utf-8"), hashlib.sha256).hexdigest()
        return f"{digest[:16]}@{domain}"

    def _forget_idle(self) -> None:
        """Bound what a run of a million distinct domains keeps: drop the least recently used idle
        domains beyond `result_memory` (what was learned of them, catch-all, is lost with them)."""
        bound = self._memory
        if len(self._domains) > bound:
            for name in list(itertools.islice(self._domains, len(self._domains) - bound)):
                domain = self._domains[name]
                if not domain.pending and not domain.workers:
                    del self._domains[name]
                    lane = self._lanes.get(domain.lane_ip or "")
                    if lane is not None:
                        lane.pop(name, None)

    async def aclose(self) -> None:
        self.watch.reset_loop()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.shared is not None:
            await self.shared.aclose()

    # -- workers ---------------------------------------------------------------------------------

    async def _worker(self, domain: _Domain) -> None:
        try:
            while domain.pending:
                if self._settle_from_knowledge(domain):
                    break
                if domain.catch_all_due <= time.monotonic() and domain.probing is not None:
                    await domain.probing.wait()  # another session is asking the random address
                    continue
                await self._one_session(domain)
        except Exception as exc:  # never leave a recipient waiting forever
            log.debug("SMTP worker for a domain failed: %r", exc, exc_info=True)
            self._answer_all(
                domain, Probe(SubStatus.SMTP_CONNECTION_FAILED, rule="internal error in the prober")
            )
        finally:
            domain.workers -= 1

    def _settle_from_knowledge(self, domain: _Domain) -> bool:
        if self.watch.unavailable:
            domain.sticky = Probe(SubStatus.SMTP_UNAVAILABLE)
        if domain.sticky is not None:
            self._answer_all(domain, domain.sticky)
            return True
        if domain.catch_all:
            self._answer_all(
                domain,
                Probe(
                    None,
                    catch_all=True,
                    replies=list(domain.setup_replies),
                    rule=_CATCH_ALL_KNOWN,
                ),
            )
            return True
        return False

    @staticmethod
    def _answer_all(domain: _Domain, probe: Probe) -> None:
        while domain.pending:
            _answer(domain.pending.popleft(), probe)

    @contextlib.asynccontextmanager
    async def _host(self, ip: str) -> AsyncIterator[None]:
        """One of the `max_connections_per_mx` sessions a mail host (by IP) may have at once:
        this worker's slot, then the slot shared with the workers on its egress IP."""
        slot = self._host_slots.get(ip)
        if slot is None:
            if len(self._host_slots) >= self._memory:  # forget the oldest unused hosts
                excess = len(self._host_slots) - self._memory + 1
                for old in list(itertools.islice(self._host_slots, excess)):
                    if old not in self._host_users:
                        del self._host_slots[old]
            slot = self._host_slots[ip] = asyncio.Semaphore(self.config.max_connections_per_mx)
        self._host_users[ip] = self._host_users.get(ip, 0) + 1
        try:
            async with slot:
                if self.shared is None:
                    yield
                else:
                    async with self.shared.slot(ip, self.config.max_connections_per_mx):
                        yield
        finally:
            users = self._host_users.pop(ip) - 1
            if users:
                self._host_users[ip] = users

    @contextlib.asynccontextmanager
    async def _probe_claim(self, domain: _Domain) -> AsyncIterator[bool | None]:
        """Whether this session asks the domain's random mailbox (True), need not (False), or must
        leave it to the session already asking (None); the claim ends with the block."""
        if domain.catch_all_due > time.monotonic():
            yield False
            return
        if domain.probing is not None:
            yield None
            return
        domain.probing = asyncio.Event()
        try:
            yield True
        finally:
            domain.end_probe()

    def _addresses(self, domain: _Domain, tried: list[str]) -> list[tuple[str, str]]:
        """(host, ip) pairs to dial, in MX preference order: at most `MX_ADDRESS_LIMIT`, and only
        addresses the policy allows (the others are written into the evidence, not dialled)."""
        chosen: list[tuple[str, str]] = []
        for host in domain.route.hosts:
            for ip in host.addresses:
                if not may_contact(ip, allow_private=self.config.allow_private_mx):
                    if len(tried) < 2 * MX_ADDRESS_LIMIT:
                        tried.append(f"{host.name} ({ip}): not contacted ({classify(ip)} address)")
                    continue
                if len(chosen) < MX_ADDRESS_LIMIT:
                    chosen.append((host.name, ip))
        return chosen

    async def _one_session(self, domain: _Domain) -> None:
        """One attempt for the domain's waiting recipients, within `verification_deadline` from
        the moment a mail host slot is held (waiting for a slot is our politeness, not the
        server's time)."""
        tried: list[str] = []
        box: list[_SessionState] = []
        try:
            async with asyncio.timeout(None) as clock:
                await self._attempt(domain, tried, box, clock)
        except TimeoutError:
            state = box[0] if box else None
            if state is not None and state.serving is not None and state.serving is not domain:
                # The session had moved on to another domain of the host: this one was served.
                self._requeue(state.serving, state.in_flight)
                return
            domain.sticky = Probe(
                SubStatus.SMTP_TIMEOUT,
                replies=list(domain.setup_replies),
                hosts_tried=tried,
                rule=f"the mail hosts took longer than verification_deadline "
                f"({self.config.deadline:g} s)",
            )
            self._answer_all(domain, domain.sticky)

    async def _attempt(
        self,
        domain: _Domain,
        tried: list[str],
        box: list[_SessionState],
        clock: asyncio.Timeout,
    ) -> None:
        """Open a session (with MX failover), probe catch-all when due, then drain recipients.

        The catch-all probe is claimed only once a mail host slot is held: a domain waiting for a
        slot can meanwhile be served, probe included, by a session another domain opened."""
        failures: list[_Failed] = []
        addresses = self._addresses(domain, tried)
        if not addresses:
            domain.sticky = Probe(
                SubStatus.MX_NOT_PUBLIC,
                hosts_tried=tried,
                rule="mx not public: no mail host has an address the probe may contact",
            )
            self._answer_all(domain, domain.sticky)
            return
        unreachable: set[str] = set()  # hosts whose other addresses will not do better
        sessions = 0  # connections that were made but failed before RCPT
        for host_name, ip in addresses:
            if host_name in unreachable:
                continue
            if sessions >= MX_SESSION_LIMIT:
                break
            async with self._host(ip), self._probe_claim(domain) as prober:
                if not domain.pending or prober is None:
                    return  # served meanwhile by a shared session, or its probe runs elsewhere
                if clock.when() is None:  # the first slot held: the deadline starts now
                    clock.reschedule(asyncio.get_running_loop().time() + self.config.deadline)
                self.dialled.append(ip)
                session, failure, refusal = await self._open(
                    SmtpSession(
                        host_name,
                        ip,
                        self.config.smtp_port,
                        self.timeouts,
                        self.config.socks_proxy,
                        allow_private=self.config.allow_private_mx,
                    ),
                    domain.route.domain,
                )
                tried.append(f"{host_name} ({ip}): {_describe(failure, refusal)}")
                if failure is None and refusal is None:
                    # The conversation ends politely before the clock would cut it (which
                    # would answer every waiting recipient with a timeout): a slow server
                    # serves fewer recipients per session, not none.
                    when = clock.when()
                    left = when - asyncio.get_running_loop().time() if when else math.inf
                    try:
                        await self._converse(
                            domain, session, prober, tried, box, time.monotonic() + left
                        )
                    finally:
                        if not clock.expired():
                            clock.reschedule(None)  # QUIT has its own short timeout
                        await session.quit()
                    return
                await session.quit()  # closes at once when the connection is already broken
                domain.setup_replies = list(session.transcript)
                last = session.transcript[-1] if session.transcript else None
                stage = last.command if last is not None else "connect"
                failures.append(_Failed(host_name, failure, refusal, stage, last))
                if failure is not None and failure.stage == "connect":
                    if failure.kind == "unreachable":
                        unreachable.add(host_name)
                else:
                    sessions += 1
        # Every mail host failed: the answer for every recipient of the domain (for this run),
        # unless they all only deferred (a busy 421 may be our own doing): then retry a little.
        probe = await self._failure_probe(failures)
        probe.replies, probe.hosts_tried = list(domain.setup_replies), tried
        if failures and all(
            f.refusal is not None and 400 <= f.refusal.code < 500 for f in failures
        ):
            await self._back_off(domain, probe)
            return
        domain.sticky = probe
        self._answer_all(domain, probe)

    async def _path_works(self, ip: str) -> bool:
        """TCP to port 25 of `ip` and hang up (the port-25 watch's active check): True when the
        connection was made or refused, both proof that the path is open."""
        session = SmtpSession(
            "port-25 check",
            ip,
            self.config.smtp_port,
            self.timeouts,
            self.config.socks_proxy,
            allow_private=self.config.allow_private_mx,
        )
        self.dialled.append(ip)
        try:
            await session.dial()
        except SmtpFailure as failure:
            return failure.kind == "refused"
        finally:
            session.close()
        return True

    def _other_hosts(self, networks: set[str], domains: set[str]) -> list[str]:
        """Addresses of domains other than `domains`, in networks other than `networks`: those
        with the most recipients waiting first."""
        ranked = sorted(
            (d for name, d in self._domains.items() if name not in domains),
            key=lambda d: -len(d.pending),
        )
        chosen: list[str] = []
        seen = set(networks)
        for domain in ranked:
            for host in domain.route.hosts:
                for ip in host.addresses:
                    network = network_of(ip)
                    if network not in seen and may_contact(
                        ip, allow_private=self.config.allow_private_mx
                    ):
                        seen.add(network)
                        chosen.append(ip)
                        break
                else:
                    continue
                break
            if len(chosen) >= 2 * self.config.port25_probe_hosts:
                break
        return chosen

    async def _back_off(self, domain: _Domain, probe: Probe) -> None:
        """Count an attempt for every waiting recipient, answer those out of attempts, pause."""
        keep: collections.deque[_Pending] = collections.deque()
        for item in domain.pending:
            item.attempts += 1
            if item.attempts >= MAX_ATTEMPTS:
                _answer(item, probe)
            else:
                keep.append(item)
        domain.pending = keep
        if keep:
            await asyncio.sleep(0.2 * max(item.attempts for item in keep))

    async def _open(
        self, session: SmtpSession, domain_name: str
    ) -> tuple[SmtpSession, SmtpFailure | None, Reply | None]:
        """Connect, banner, EHLO/HELO, STARTTLS, MAIL FROM -> (session, failure, refusal)."""
        try:
            banner = await session.connect()
        except SmtpFailure as failure:
            if failure.kind == "unreachable":
                self.watch.unreachable(session.ip, domain_name)
            elif failure.kind == "refused":
                self.watch.reached()
            elif failure.kind == "proxy" and not self._proxy_warned:
                self._proxy_warned = True
                log.warning(
                    "The SOCKS proxy in `socks_proxy` cannot be reached; check its host and port. "
                    "Addresses get Unknown/smtp_connection_failed meanwhile."
                )
            return session, failure, None
        self.watch.reached()
        try:
            if banner.code != 220:
                return session, None, banner
            reply = await session.hello(self.config.helo_hostname)
            if not reply.positive:
                return session, None, reply
            if session.ip not in self._no_tls and self._tls_known_broken(session.host):
                self._no_tls.add(session.ip)  # an earlier run found its STARTTLS broken
            if self.config.smtp_starttls and session.ip not in self._no_tls:
                try:
                    if await session.starttls(session.host):
                        self._learn_tls(session.host, True)
                        reply = await session.hello(self.config.helo_hostname)
                        if not reply.positive:
                            return session, None, reply
                except SmtpFailure:
                    # A broken TLS stack: remember it and retry this host in plaintext.
                    self._no_tls.add(session.ip)
                    self._learn_tls(session.host, False)
                    session.close()
                    return await self._open(
                        SmtpSession(
                            session.host,
                            session.ip,
                            session.port,
                            session.timeouts,
                            session.proxy_url,
                            session.transcript,
                            allow_private=session.allow_private,
                        ),
                        domain_name,
                    )
            params = " SMTPUTF8" if "SMTPUTF8" in session.extensions else ""
            reply = await session.command(f"MAIL FROM:<{self.config.sender}>{params}", label="MAIL")
            if not reply.positive:
                return session, None, reply
        except SmtpFailure as failure:
            return session, failure, None
        return session, None, None

    async def _failure_probe(self, failures: list[_Failed]) -> Probe:
        """The answer for a domain none of whose mail hosts let us ask about a recipient."""
        readings = [
            (read_refusal(f.refusal, f.stage), f) for f in failures if f.refusal is not None
        ]
        for reading, failed in readings:
            if reading.about_us and failed.refusal is not None:
                self.setup.refused(failed.host, reading, failed.refusal)
        if readings:
            ranked = sorted(readings, key=lambda r: _REFUSAL_RANK.get(r[0].outcome, 9))
            reading, failed = ranked[0]
            deferred = reading.outcome is Outcome.DEFERRED and failed.refusal is not None
            return Probe(
                VERDICT_OF[reading.outcome][1],
                rule=f"refused before any recipient: {reading.rule}",
                decisive=failed.reply,
                about_us=any(r.about_us for r, _ in readings),
                retry_after=named_delay(failed.refusal) if deferred and failed.refusal else None,
            )
        kinds = [f.failure.kind for f in failures if f.failure is not None]
        if kinds and all(kind == "unreachable" for kind in kinds):
            if await self.watch.settle(2 * self.timeouts.connect):
                return Probe(SubStatus.SMTP_UNAVAILABLE, rule="port 25 unreachable from this host")
            return Probe(SubStatus.SMTP_TIMEOUT, rule="no mail host could be reached")
        if "timeout" in kinds or "unreachable" in kinds:
            return Probe(SubStatus.SMTP_TIMEOUT, rule="mail hosts did not answer in time")
        if "protocol" in kinds:
            return Probe(
                SubStatus.SMTP_CONNECTION_FAILED,
                rule="mail hosts broke the protocol (malformed or oversized replies)",
            )
        return Probe(SubStatus.SMTP_CONNECTION_FAILED, rule="mail hosts dropped the connection")

    async def _converse(
        self,
        domain: _Domain,
        session: SmtpSession,
        prober: bool,
        tried: list[str],
        box: list[_SessionState],
        until: float,
    ) -> None:
        """Serve `domain`'s recipients on an open session (MAIL FROM sent), then those of other
        domains waiting on the same mail host: RSET and a new MAIL FROM for each, never two
        domains in one transaction; no command starts that could end after `until`."""
        deadline = min(time.monotonic() + self.config.session_timeout, until)
        base = len(session.transcript)  # banner .. MAIL FROM: every transaction's evidence
        state = _SessionState(deadline=deadline, base=base, start=base)
        box.append(state)
        current: _Domain | None = domain
        probing = prober
        try:
            while current is not None:
                first = state.serving is None
                state.serving = current
                if not first and not await self._next_transaction(current, session, state):
                    return
                usable = await self._transaction(current, session, probing, tried, state)
                probing = False  # `_transaction` ended the claim
                if not usable:
                    return
                current = self._next_domain(session, current, state)
                if (
                    current is not None
                    and current.catch_all_due <= time.monotonic()
                    and current.probing is None
                ):  # this session asks its random mailbox
                    current.probing, probing = asyncio.Event(), True
        finally:
            # A claim this session could not use (RSET refused, cancelled): its own sessions ask.
            if probing and current is not None:
                current.end_probe()

    def _next_domain(
        self, session: SmtpSession, served: _Domain, state: _SessionState
    ) -> _Domain | None:
        """Another domain with recipients waiting whose mail goes to this session's host."""
        if state.sent >= state.session_limit or time.monotonic() + self.timeouts.command > (
            state.deadline
        ):
            return None
        lane = self._lanes.get(session.ip)
        if not lane:
            return None
        for name in list(lane):
            other = lane[name]
            if other is served or not other.pending or other.sticky is not None or other.catch_all:
                if not other.pending:
                    del lane[name]
                continue
            if other.probing is not None or other.rcpt_cap() <= state.sent:
                continue  # its catch-all probe runs elsewhere; or one recipient per connection
            if any(item.needs_utf8 for item in other.pending) and (
                "SMTPUTF8" not in session.extensions
            ):
                continue
            return other
        return None

    def _other_waiting(self, ip: str, served: _Domain) -> bool:
        """Another domain has recipients waiting on this host (so a session hops, not lingers)."""
        lane = self._lanes.get(ip)
        return bool(lane) and any(
            other is not served and other.pending for other in (lane or {}).values()
        )

    async def _next_transaction(
        self, domain: _Domain, session: SmtpSession, state: _SessionState
    ) -> bool:
        """RSET and MAIL FROM for the next domain; False when the server will not (the session
        ends and the domain's own sessions serve it). On a host whose RSET is known to work and
        that offers PIPELINING, they wait to go out with the first RCPT (`_send`)."""
        state.start = len(session.transcript)
        params = " SMTPUTF8" if "SMTPUTF8" in session.extensions else ""
        mail = f"MAIL FROM:<{self.config.sender}>{params}"
        host = self._host_state(session.ip)
        if session.pipelining and not host.no_pipelining:
            state.opening = ["RSET", mail]
            if host.rset_works:
                return True
            # RSET and MAIL FROM in a group of their own; a refused RSET makes the MAIL FROM fail
            # too ("nested MAIL"), and the session ends either way.
            try:
                await self._send(session, state, [], "RSET")
            except (SmtpFailure, _OpeningRefused):
                return False
            return True
        try:
            rset = await session.command("RSET")
            if rset.code != 250:
                return False
            reply = await session.command(mail, label="MAIL")
        except SmtpFailure:
            return False
        if not reply.positive:
            return False
        host.rset_works = True
        self.counters["sessions_shared"] += 1
        return True

    async def _send(
        self, session: SmtpSession, state: _SessionState, lines: list[str], label: str
    ) -> list[Reply]:
        """Send RCPT `lines` (pipelined when more than one), with the transaction's opening
        (RSET, MAIL FROM) in front when it is still unsent; their replies. Raises
        `_OpeningRefused` when the opening failed: the RCPT replies are then no verdicts. A
        pipelined group the server answers out of step marks the host (`_out_of_step`)."""
        opening, state.opening = state.opening, []
        if not opening:
            if len(lines) == 1:
                return [await session.command(lines[0], label=label)]
            return await session.pipeline(lines, label)
        labels = ["RSET", "MAIL", *([label] * len(lines))]
        try:
            replies = await session.pipeline([*opening, *lines], labels)
        except SmtpFailure as failure:
            if failure.kind in ("timeout", "protocol"):
                self._out_of_step(session.ip)
            raise
        rset, mail = replies[0], replies[1]
        if rset.code != 250 or not mail.positive:
            raise _OpeningRefused
        self._host_state(session.ip).rset_works = True
        self.counters["sessions_shared"] += 1
        return replies[2:]

    def _out_of_step(self, ip: str) -> None:
        """The host answered a pipelined group with fewer or more replies than commands: nothing
        it said there is trusted, and its later sessions wait for each reply. Counted once per
        host (a group carrying the opening is seen failing twice: here and by its batch)."""
        host = self._host_state(ip)
        if not host.no_pipelining:
            host.no_pipelining = True
            self.counters["pipelining_out_of_step"] += 1

    async def _transaction(
        self,
        domain: _Domain,
        session: SmtpSession,
        prober: bool,
        tried: list[str],
        state: _SessionState,
    ) -> bool:
        """Ask one domain's recipients in the open transaction (the catch-all probe first when
        this session owns it); False when the session cannot serve another domain."""
        try:
            return await self._ask(domain, session, prober, tried, state)
        finally:
            if prober:
                domain.end_probe()

    def _evidence_base(
        self, session: SmtpSession, state: _SessionState, end: int | None = None
    ) -> list[SmtpReply]:
        """The session's setup and this transaction's own replies (up to `end`): never another
        domain's."""
        transcript = session.transcript[:end]
        if state.start == state.base:
            return list(transcript)
        return [*transcript[: state.base], *transcript[state.start :]]

    async def _ask(
        self,
        domain: _Domain,
        session: SmtpSession,
        prober: bool,
        tried: list[str],
        state: _SessionState,
    ) -> bool:
        setup = self._evidence_base(session, state)
        sent = 0  # RCPTs in this transaction, the catch-all probe included (servers count it too)
        if prober and domain.catch_all_due <= time.monotonic():
            opened = bool(state.opening)  # a timeout then says: out of step, not a tarpit
            try:
                sent += 1
                state.sent += 1
                self.counters["catch_all_probes"] += 1
                # Booked without waiting: one RCPT a domain; later recipients wait for it.
                self._host_state(session.ip).reserve(
                    time.monotonic(), self.config.max_rcpt_per_minute_per_mx
                )
                (reply,) = await self._send(
                    session,
                    state,
                    [f"RCPT TO:<{self._catch_all_address(domain.route.domain)}>"],
                    "RCPT (catch-all probe)",
                )
                reading = self._judge(domain, session.host, reply)
                self._settle_catch_all(domain, reply, reading)
            except _OpeningRefused:
                return False  # the domain's own sessions ask it
            except SmtpFailure as failure:
                if failure.kind == "timeout" and not opened:
                    self._tarpit(domain, session, tried)
                elif failure.kind != "timeout":
                    # dropped: give up on the probe (the real RCPTs count their own attempts)
                    domain.catch_all_due = float("inf")
                return False
            finally:
                setup = self._evidence_base(session, state)
                domain.setup_replies = setup
            if domain.catch_all:
                self._answer_all(
                    domain,
                    Probe(
                        None,
                        catch_all=True,
                        replies=setup,
                        hosts_tried=tried,
                        rule="catch-all: the domain accepts a random mailbox",
                        decisive=setup[-1] if setup else None,
                    ),
                )
                return True
            if reply.code == 421:
                return False
        limit = min(domain.rcpt_cap(), self.config.smtp_max_rcpt_per_session)
        state.session_limit = min(state.session_limit, domain.rcpt_cap())
        asked = 0  # real recipients in this transaction: the first is asked whatever the deadline
        while sent < limit and state.sent < state.session_limit:
            if asked and time.monotonic() + self.timeouts.command > state.deadline:
                return False
            if not domain.pending and (
                self._other_waiting(session.ip, domain)
                or not await self._linger(domain, state.deadline)
            ):
                return True
            batch = self._take(domain, session, setup, tried, min(limit - sent, state.room()))
            if not batch:
                continue
            if self._paused(session.ip):  # another session of the host was asked to slow down
                self._defer_for_rate(domain, batch, self._host_state(session.ip), setup, tried)
                return False
            for item in batch:
                item.attempts += 1
            state.in_flight = batch
            asked += len(batch)
            sent += len(batch)
            state.sent += len(batch)
            opened = bool(state.opening)
            grouped = len(batch) > 1 or opened
            try:
                if len(batch) > 1:
                    self.counters["rcpts_pipelined"] += len(batch)
                replies = await self._send(
                    session, state, [f"RCPT TO:<{item.address}>" for item in batch], "RCPT"
                )
            except _OpeningRefused:
                state.in_flight = []
                for item in batch:  # nothing was asked about them
                    item.attempts -= 1
                self._requeue(domain, batch)
                return False
            except SmtpFailure as failure:
                state.in_flight = []
                self._batch_failed(domain, session, batch, failure, tried, grouped)
                return False
            state.in_flight = []
            if opened:  # the evidence gains the transaction's RSET and MAIL FROM
                setup = self._evidence_base(session, state, -len(batch))
            for item, reply in zip(batch, replies, strict=True):
                keep_going = self._answer_rcpt(domain, session, item, reply, setup, tried, sent)
                if not keep_going:
                    # the rest of the batch: asked again in another session, no attempt counted
                    rest = batch[batch.index(item) + 1 :]
                    for later in rest:
                        later.attempts -= 1
                    self._requeue(domain, rest)
                    return False
        return True

    def _take(
        self,
        domain: _Domain,
        session: SmtpSession,
        setup: list[SmtpReply],
        tried: list[str],
        most: int,
    ) -> list[_Pending]:
        """Up to `most` waiting recipients for the next RCPT (or pipelined RCPTs)."""
        pipelined = session.pipelining and not self._host_state(session.ip).no_pipelining
        batch: list[_Pending] = []
        while domain.pending and len(batch) < (most if pipelined else 1):
            item = domain.pending.popleft()
            if item.future.done():
                continue
            if item.needs_utf8 and "SMTPUTF8" not in session.extensions:
                _answer(
                    item,
                    Probe(
                        SubStatus.SMTP_UNAVAILABLE,
                        replies=setup,
                        hosts_tried=tried,
                        rule="the address needs SMTPUTF8, which the server does not offer",
                    ),
                )
                continue
            item.taken()
            batch.append(item)
        return batch

    def _batch_failed(
        self,
        domain: _Domain,
        session: SmtpSession,
        batch: list[_Pending],
        failure: SmtpFailure,
        tried: list[str],
        grouped: bool,
    ) -> None:
        """The connection failed while RCPTs were out: no reply is paired with a recipient."""
        if grouped and failure.kind in ("timeout", "protocol"):
            # A server out of step with its pipelined replies (fewer or more than commands):
            # nothing it said is trusted; ask these recipients again, one at a time.
            self._out_of_step(session.ip)
            for item in batch:
                item.attempts -= 1
            self._requeue(domain, batch)
            return
        if failure.kind == "timeout":
            self._requeue(domain, batch)
            self._tarpit(domain, session, tried)
            return
        for item in reversed(batch):
            if failure.kind == "protocol":  # a broken server: asking again changes nothing
                item.attempts = MAX_ATTEMPTS
            self._retry_or_answer(
                domain,
                item,
                Probe(
                    SubStatus.SMTP_CONNECTION_FAILED,
                    replies=list(domain.setup_replies),
                    hosts_tried=tried,
                    rule=f"the connection failed at RCPT ({failure})",
                ),
            )

    def _answer_rcpt(
        self,
        domain: _Domain,
        session: SmtpSession,
        item: _Pending,
        reply: Reply,
        setup: list[SmtpReply],
        tried: list[str],
        sent: int,
    ) -> bool:
        """Answer one recipient from its RCPT reply; False when the session must end."""
        reading = self._judge(domain, session.host, reply)
        outcome = reading.outcome
        evidence = SmtpReply(session.host, "RCPT", reply.code, reply.enhanced, reply.text[:200])
        replies = [*setup, evidence]
        if rate_limited(reply) and outcome not in (Outcome.ACCEPTED, Outcome.TOO_MANY_RECIPIENTS):
            host = self._host_state(session.ip)
            host.slow_down(time.monotonic())
            self._pause_others(session.ip, host)
            item.attempts -= 1
            self._defer_for_rate(domain, [item], host, replies, tried)
            return False
        if outcome is Outcome.TOO_MANY_RECIPIENTS:
            # A session limit, never a verdict on this recipient: ask again in a new session.
            if sent > 1:
                domain.rcpt_limit = max(1, sent - 1)  # later sessions stay under the limit
                item.attempts -= 1  # not this recipient's fault
            self._retry_or_answer(
                domain,
                item,
                Probe(
                    SubStatus.GREYLISTED,
                    domain.catch_all,
                    VERDICT_OF[outcome][0],
                    replies=replies,
                    hosts_tried=tried,
                    rule=_ruled(reading),
                    decisive=evidence,
                ),
            )
            return False
        if outcome is Outcome.DEFERRED and not domain.greylisting:
            domain.greylisting = True
            self._learn(domain)
        status, substatus = (None, None) if outcome is Outcome.ACCEPTED else VERDICT_OF[outcome]
        _answer(
            item,
            Probe(
                substatus,
                domain.catch_all,
                status,
                replies=replies,
                hosts_tried=tried,
                rule=_ruled(reading),
                decisive=evidence,
                about_us=reading.about_us,
                retry_after=named_delay(reply) if outcome is Outcome.DEFERRED else None,
            ),
        )
        return reply.code != 421  # the server is closing the channel

    def _defer_for_rate(
        self,
        domain: _Domain,
        items: list[_Pending],
        host: _HostState,
        replies: list[SmtpReply],
        tried: list[str],
    ) -> None:
        """The host asked us to slow down (or our own cap has no room soon): these recipients and
        the domain's others are asked again later in the run (`greylist_retry_after` rules),
        never given a verdict now."""
        wait = max(host.paused_until - time.monotonic(), 1.0)
        probe = Probe(
            SubStatus.GREYLISTED,
            replies=replies,
            hosts_tried=tried,
            rule=f"the mail host asks us to slow down: asked again in {wait:.0f} s",
            decisive=replies[-1] if replies else None,
            retry_after=wait,
        )
        self.counters["rate_deferrals"] += len(items) + len(domain.pending)
        for item in items:
            _answer(item, probe)
        self._answer_all(domain, probe)

    async def _admit(self, ip: str) -> Probe | None:
        """Wait for this recipient's turn under the host's rate (`max_rcpt_per_minute_per_mx`),
        without counting the wait against `verification_deadline` (it is our politeness, not the
        server's slowness); a host paused after asking us to slow down sends the recipient to the
        in-run retry instead."""
        host = self._host_state(ip)
        now = time.monotonic()
        if host.paused_until - now > PAUSE_DEFERS:
            return self._deferred(host.paused_until - now)
        per_minute = self.config.max_rcpt_per_minute_per_mx
        wait = host.reserve(now, per_minute)
        if self.shared is not None:  # the workers on this egress IP share the host's rate
            interval, burst = host.pace(per_minute)
            async with deadline_paused():
                shared, paused = await self.shared.book(ip, interval, burst * interval)
            if paused > PAUSE_DEFERS:  # the host asked another worker on this IP to slow down
                host.paused_until = max(host.paused_until, time.monotonic() + paused)
                return self._deferred(paused)
            wait = max(wait - (time.monotonic() - now), shared)
        if wait > 0:
            self.counters["rate_waits"] += 1
            leave_slot()  # the wait is ours: the next address may do its DNS meanwhile
            async with deadline_paused():
                await asyncio.sleep(wait)
        return None

    def _deferred(self, wait: float) -> Probe:
        """The recipient goes to the in-run retry: its host is paused for `wait` seconds."""
        self.counters["rate_deferrals"] += 1
        return Probe(
            SubStatus.GREYLISTED,
            rule=f"the mail host asked us to slow down: asked again in {wait:.0f} s",
            retry_after=wait,
        )

    def _pause_others(self, ip: str, host: _HostState) -> None:
        """The workers sharing this egress IP pause the host too (in the background)."""
        if self.shared is not None:
            task = asyncio.create_task(self.shared.pause(ip, host.paused_until - time.monotonic()))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _paused(self, ip: str) -> bool:
        """The host asked us to slow down and its pause is not over."""
        return self._host_state(ip).paused_until > time.monotonic()

    def _host_state(self, ip: str) -> _HostState:
        state = self._hosts.get(ip)
        if state is None:
            if len(self._hosts) >= self._memory:
                for old in list(itertools.islice(self._hosts, len(self._hosts) - self._memory + 1)):
                    if old not in self._host_users:
                        del self._hosts[old]
            state = self._hosts[ip] = _HostState()
        return state

    def _settle_catch_all(self, domain: _Domain, reply: Reply, reading: Reading) -> None:
        """What the random mailbox's answer says about the domain."""
        if reading.about_us:
            domain.catch_all = None  # the real recipients will meet the same refusal
        elif reading.outcome is Outcome.ACCEPTED:
            domain.catch_all = True
        elif reading.outcome is Outcome.DEFERRED and self.config.greylist_max_wait > 0:
            # Greylisted: ask the same mailbox again once the delay passed (the real recipients
            # wait as long); meanwhile sessions go straight to the real recipients.
            domain.greylisting = True
            delay = named_delay(reply) or self.config.greylist_retry_after
            domain.catch_all_due = time.monotonic() + max(delay, 0.5)
            return
        else:
            domain.catch_all = False if reply.code >= 500 else None
        domain.catch_all_due = float("inf")
        if not reading.about_us:
            self._learn(domain)

    def _judge(self, domain: _Domain, host: str, reply: Reply) -> Reading:
        """Read a RCPT reply (the provider's rule first) and tell the setup watch what it says
        about our probe."""
        rule = domain.rule
        reading = (rule.read(reply) if rule is not None else None) or read_rcpt(reply)
        if (
            rule is not None
            and rule.greylists
            and 400 <= reply.code < 500
            and reading.outcome in ABOUT_US
        ):
            # This provider greylists at RCPT: a temporary refusal there is the greylist.
            reading = Reading(
                Outcome.DEFERRED, f"{rule.name} greylists at RCPT ({reply.code})", reading.family
            )
        if reading.about_us:
            self.setup.refused(host, reading, reply)
        elif reading.outcome in MAILBOX_LEVEL:
            self.setup.answered(host)
        return reading

    async def _linger(self, domain: _Domain, deadline: float) -> bool:
        """Keep an idle session a moment for recipients still on their way (records stream in)."""
        wait = min(
            self.config.smtp_session_linger, deadline - time.monotonic() - self.timeouts.command
        )
        if wait <= 0:
            return False
        domain.arrived.clear()
        try:
            async with asyncio.timeout(wait):
                await domain.arrived.wait()
        except TimeoutError:
            return False
        return bool(domain.pending)

    def _retry_or_answer(self, domain: _Domain, item: _Pending, probe: Probe) -> None:
        if item.attempts < MAX_ATTEMPTS:
            self._requeue(domain, [item])
        else:
            _answer(item, probe)

    def _tarpit(self, domain: _Domain, session: SmtpSession, tried: list[str]) -> None:
        """A server too slow to answer within the budget will be as slow for the next recipient."""
        domain.sticky = Probe(
            SubStatus.SMTP_TIMEOUT,
            replies=list(session.transcript),
            hosts_tried=tried,
            rule="the server did not answer within smtp_timeout (a tarpit)",
        )
        self._answer_all(domain, domain.sticky)
