"""Mailbox probing over SMTP, shaped for throughput and politeness.

Per domain, recipients waiting for an answer are queued and drained by a few workers; each worker
holds one session (MX failover, EHLO, STARTTLS, MAIL FROM) and asks several RCPTs in it,
reconnecting on "too many recipients". The first session of a domain first asks about a random
mailbox: a domain that accepts it is catch-all, cached for the run, and its other recipients need no
RCPT at all. Each mail host (by IP) gets at most `max_connections_per_mx` sessions at once, whatever
the global concurrency.

Every reply is read by `replies` (what it is about, and the rule that decided); a refusal of the
probe itself (our sender, IP or rate) goes to the `SetupWatch`, which holds it until it knows
whether that host refuses us or every host does (then the run stops, see `setup_watch`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import secrets
import string
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from mapper_emailverify.engine.address_policy import classify, may_contact, network_of
from mapper_emailverify.engine.config import VerifierConfig
from mapper_emailverify.engine.dns_lookup import DomainRoute
from mapper_emailverify.engine.result import SmtpReply
from mapper_emailverify.engine.smtp.port25_watch import Port25Watch
from mapper_emailverify.engine.smtp.replies import (
    VERDICT_OF,
    Outcome,
    Reading,
    Reply,
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


def _answer(item: _Pending, probe: Probe) -> None:
    """Resolve a recipient's wait, unless its verification already ended (deadline, cancel)."""
    if not item.future.done():
        item.future.set_result(probe)


def _describe(failure: SmtpFailure | None, refusal: Reply | None) -> str:
    if refusal is not None:
        return f"{refusal.code} {refusal.text[:80]}"
    return str(failure) if failure is not None else "connected"


def _random_local_part() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(16))


class _Domain:
    """The queue and shared knowledge (catch-all, sticky failure) for one domain during a run."""

    def __init__(self, route: DomainRoute) -> None:
        self.route = route
        self.pending: collections.deque[_Pending] = collections.deque()
        self.workers = 0
        self.catch_all: bool | None = None
        self.catch_all_checked = (
            False  # the random-address probe got an answer (maybe inconclusive)
        )
        self.probing: asyncio.Event | None = None  # set when the session doing the probe is done
        self.sticky: Probe | None = None  # a domain-level failure answers every later recipient
        self.setup_replies: list[SmtpReply] = []
        self.rcpt_limit: int | None = None  # learned from a "452 4.5.3 too many recipients"
        self.arrived = asyncio.Event()  # a recipient joined the queue (wakes a lingering session)


class SmtpProber:
    """Answers `probe(route, address)` using shared sessions per domain."""

    def __init__(self, config: VerifierConfig) -> None:
        self.config = config
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
            learned.catch_all, learned.catch_all_checked = (
                domain.catch_all,
                domain.catch_all_checked,
            )
            learned.sticky, learned.setup_replies = domain.sticky, domain.setup_replies
            self._domains[name] = learned
        self._host_slots.clear()
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
            domain = self._domains[route.domain] = _Domain(route)
            self._forget_idle()
        elif next(reversed(self._domains)) != route.domain:  # most recently used last
            self._domains[route.domain] = self._domains.pop(route.domain)
        if domain.sticky is not None:
            return domain.sticky
        if domain.catch_all:
            return Probe(
                None,
                catch_all=True,
                replies=list(domain.setup_replies),
                rule=_CATCH_ALL_KNOWN,
            )
        item = _Pending(address, needs_utf8, asyncio.get_running_loop().create_future())
        domain.pending.append(item)
        domain.arrived.set()
        if domain.workers < self.config.max_connections_per_mx and (
            domain.workers == 0 or len(domain.pending) > domain.workers
        ):
            domain.workers += 1
            task = asyncio.create_task(self._worker(domain))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await item.future

    def _forget_idle(self) -> None:
        """Bound what a run of a million distinct domains keeps: drop the least recently used idle
        domains beyond `result_memory` (what was learned of them, catch-all, is lost with them)."""
        bound = self._memory
        if len(self._domains) > bound:
            for name in list(itertools.islice(self._domains, len(self._domains) - bound)):
                domain = self._domains[name]
                if not domain.pending and not domain.workers:
                    del self._domains[name]

    async def aclose(self) -> None:
        self.watch.reset_loop()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- workers ---------------------------------------------------------------------------------

    async def _worker(self, domain: _Domain) -> None:
        try:
            while domain.pending:
                if self._settle_from_knowledge(domain):
                    break
                probing = False
                if not domain.catch_all_checked:
                    if domain.probing is not None:  # another session is asking the random address
                        await domain.probing.wait()
                        continue
                    domain.probing, probing = asyncio.Event(), True
                try:
                    await self._one_session(domain, probing)
                finally:
                    if probing and domain.probing is not None:
                        domain.probing.set()
                        domain.probing = None
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
        """One of the `max_connections_per_mx` sessions a mail host (by IP) may have at once."""
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
                yield
        finally:
            users = self._host_users.pop(ip) - 1
            if users:
                self._host_users[ip] = users

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

    async def _one_session(self, domain: _Domain, prober: bool) -> None:
        """One attempt for the domain's waiting recipients, within `verification_deadline`."""
        tried: list[str] = []
        try:
            async with asyncio.timeout(self.config.deadline):
                await self._attempt(domain, prober, tried)
        except TimeoutError:
            domain.sticky = Probe(
                SubStatus.SMTP_TIMEOUT,
                replies=list(domain.setup_replies),
                hosts_tried=tried,
                rule=f"the mail hosts took longer than verification_deadline "
                f"({self.config.deadline:g} s)",
            )
            self._answer_all(domain, domain.sticky)

    async def _attempt(self, domain: _Domain, prober: bool, tried: list[str]) -> None:
        """Open a session (with MX failover), optionally probe catch-all, then drain recipients."""
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
            async with self._host(ip):
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
                    try:
                        await self._converse(domain, session, prober, tried)
                    finally:
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
            if self.config.smtp_starttls and session.ip not in self._no_tls:
                try:
                    if await session.starttls(session.host):
                        reply = await session.hello(self.config.helo_hostname)
                        if not reply.positive:
                            return session, None, reply
                except SmtpFailure:
                    # A broken TLS stack: remember it and retry this host in plaintext.
                    self._no_tls.add(session.ip)
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
            return Probe(
                VERDICT_OF[reading.outcome][1],
                rule=f"refused before any recipient: {reading.rule}",
                decisive=failed.reply,
                about_us=any(r.about_us for r, _ in readings),
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
        self, domain: _Domain, session: SmtpSession, prober: bool, tried: list[str]
    ) -> None:
        setup = list(session.transcript)
        deadline = time.monotonic() + self.config.session_timeout
        sent = 0  # RCPTs in this session, the catch-all probe included (servers count it too)
        if prober and not domain.catch_all_checked:
            try:
                sent += 1
                reply = await session.command(
                    f"RCPT TO:<{_random_local_part()}@{domain.route.domain}>",
                    label="RCPT (catch-all probe)",
                )
                reading = self._judge(session.host, reply)
                if reading.about_us:
                    domain.catch_all = None  # the real recipients will meet the same refusal
                elif reading.outcome is Outcome.ACCEPTED:
                    domain.catch_all = True
                else:
                    domain.catch_all = False if reply.code >= 500 else None
                domain.catch_all_checked = True
            except SmtpFailure as failure:
                if failure.kind == "timeout":
                    self._tarpit(domain, session, tried)
                else:  # dropped: give up on the probe (the real RCPTs count their own attempts)
                    domain.catch_all_checked = True
                return
            finally:
                setup = list(session.transcript)
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
                return
        asked = 0  # real recipients in this session: the first is asked whatever the deadline says
        while sent < min(self.config.smtp_max_rcpt_per_session, domain.rcpt_limit or 10**6):
            if asked and time.monotonic() + self.timeouts.command > deadline:
                return
            if not domain.pending and not await self._linger(domain, deadline):
                return
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
            item.attempts += 1
            asked += 1
            try:
                reply = await session.command(f"RCPT TO:<{item.address}>", label="RCPT")
            except SmtpFailure as failure:
                if failure.kind == "timeout":
                    domain.pending.appendleft(item)
                    self._tarpit(domain, session, tried)
                    return
                if failure.kind == "protocol":  # a broken server: asking again changes nothing
                    item.attempts = MAX_ATTEMPTS
                self._retry_or_answer(
                    domain,
                    item,
                    Probe(
                        SubStatus.SMTP_CONNECTION_FAILED,
                        replies=list(session.transcript),
                        hosts_tried=tried,
                        rule=f"the connection failed at RCPT ({failure})",
                    ),
                )
                return
            sent += 1
            reading = self._judge(session.host, reply)
            outcome = reading.outcome
            replies = [*setup, session.transcript[-1]]
            if outcome is Outcome.TOO_MANY_RECIPIENTS and sent > 1:
                domain.rcpt_limit = sent - 1  # later sessions stay under the server's limit
                item.attempts -= 1  # not this recipient's fault: ask again in a fresh session
                domain.pending.appendleft(item)
                return
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
                    decisive=replies[-1],
                    about_us=reading.about_us,
                ),
            )
            if reply.code == 421:
                return  # the server is closing the channel

    def _judge(self, host: str, reply: Reply) -> Reading:
        """Read a RCPT reply and tell the setup watch what it says about our probe."""
        reading = read_rcpt(reply)
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
            domain.pending.appendleft(item)
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
