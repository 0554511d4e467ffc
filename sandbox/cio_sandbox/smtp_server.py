"""The world's mail servers: one listening socket per mail host address (127.0.x.y), one port.

Each host answers the way its real-world counterpart does (reference/email_verification.md
section 5): honest RCPT replies per mailbox, catch-all, greylisting, tarpits, policy blocks at RCPT
or at the banner, dropped connections, per-session recipient limits, connection limits, required
STARTTLS and HELO-only servers; per-client RCPT rate limits. aiosmtpd speaks the protocol
(pipelined commands are read and answered one at a time, in order); ``MailSession`` adds what it
has no hook for (connect-time refusals, reply delays, DATA refusal, PIPELINING in EHLO, refused
RSET, closing the connection after a 421, RCPT counts per connection and per transaction).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
import re
import socket
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

from aiosmtpd.smtp import SMTP, Envelope, Session, TLSSetupException, syntax

from .loopback import address_key, bind_on_one_port
from .observe import Observatory
from .tls import server_tls_context
from .world import ROLE_MAILBOXES, SmtpHost, World
from .world_data import GOOGLE_MIXED_DOMAINS, RATE_LIMIT_REPLIES, RSET_REFUSED

log = logging.getLogger(__name__)

BACKLOG = 1024
IDLE_TIMEOUT = 300.0  # RFC 5321 4.5.3.2.7: servers wait at least 5 minutes for a command

OK = "250 2.1.5 OK"
MAIL_OK = "250 2.1.0 OK"
DISABLED = "550 5.2.1 The email account that you tried to reach is disabled"
FULL = "552 5.2.2 Mailbox full: user is over quota"
GREYLISTED = "451 4.7.1 Greylisted, please try again later"
TOO_MANY_RCPT = "452 4.5.3 Too many recipients"
BUSY = "421 4.7.0 Too many concurrent connections, try again later"
STARTTLS_FIRST = "530 5.7.0 Must issue a STARTTLS command first"
NO_EHLO = "502 5.5.2 Error: command not recognized"
NO_MESSAGES = "554 5.7.1 This sandbox accepts no messages"
ENHANCED_CODES = "250-ENHANCEDSTATUSCODES"
PIPELINING = "250-PIPELINING"
# An RFC 3463 enhanced status code after the reply code, as hosts without ENHANCEDSTATUSCODES
# leave out ("550 5.1.1 text" -> "550 text").
_ENHANCED_CODE = re.compile(r"^(\d{3}[ -])[245]\.\d{1,3}\.\d{1,3} ")
# Spamhaus-listed client, refused at RCPT (Postfix reject_rbl_client wording).
#: Postfix's reject_unknown_sender_domain, delayed to RCPT (smtpd_delay_reject = yes).
SENDER_DOMAIN_NOT_FOUND = "{code} {klass}.1.8 <{sender}>: Sender address rejected: Domain not found"
RBL_BLOCK = "550 5.7.1 Service unavailable; Client host [{client}] blocked using zen.spamhaus.org"
# Block-listed client, refused at the banner (GMX/web.de "Nemesis" wording, Reacher's tests).
BANNER_BLOCK = (
    "554 5.7.1 {hostname} Nemesis ESMTP Service not available; No SMTP service; "
    "IP address is block listed"
)


@dataclass
class MailWorld:
    """What every session of one ``start_smtp`` shares."""

    world: World
    obs: Observatory
    tls_context: ssl.SSLContext | None
    banner_block: frozenset[str]  # policy_block hosts that refuse at the banner rather than at RCPT
    # (client ip, sender, recipient) -> when first seen (time.monotonic)
    greylist: dict[tuple[str, str, str], float] = field(default_factory=dict)
    # open connections per host ip; our own count, as obs counters may be reset mid-session
    open_now: Counter[str] = field(default_factory=Counter)
    sessions: set[MailSession] = field(default_factory=set)
    fault_rng: random.Random = field(default_factory=random.Random)  # seeded by start_smtp


SESSION_FAULTS = frozenset({"greylist", "tarpit", "disconnect", "busy_421"})


def _domain_of(address: str | None) -> str:
    return (address or "").rpartition("@")[2].strip().lower().rstrip(".")


class _ChannelClosed(ConnectionResetError):
    """The server sent a 421 and closed the connection (RFC 5321 3.8): the session ends."""


def _abort(transport: asyncio.BaseTransport) -> None:
    """Drop a session's connection at once, unsent replies and all."""
    # aiosmtpd types it as a BaseTransport; it is the socket's (or, after STARTTLS, the TLS
    # layer's) asyncio.Transport, which has abort().
    cast(asyncio.Transport, transport).abort()


class MailHost:
    """aiosmtpd handler for one SmtpHost: decides every EHLO, MAIL and RCPT reply."""

    def __init__(self, host: SmtpHost, mail: MailWorld) -> None:
        self.host = host
        self.mail = mail

    async def handle_EHLO(
        self,
        server: MailSession,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        if not self.host.esmtp:
            session.extended_smtp = False
            return [NO_EHLO]
        session.host_name = hostname
        # A receiving MX offers no submission (AUTH), and says its replies carry enhanced codes
        # (unless it sends none: GMX and Web.de).
        lines = [r for r in responses if not r[4:].startswith("AUTH")]
        if self.host.pipelining:
            lines.insert(1, PIPELINING)
        if not self.host.enhanced_status_codes:
            return lines
        return [*lines[:-1], ENHANCED_CODES, lines[-1]]

    async def handle_MAIL(
        self,
        server: MailSession,
        session: Session,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        if self.host.require_starttls and session.ssl is None:
            return STARTTLS_FIRST
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return MAIL_OK

    async def handle_RCPT(
        self,
        server: MailSession,
        session: Session,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        address = address.lower()
        obs = self.mail.obs
        obs.count_rcpt(address)
        obs.count_host_rcpt(self.host.hostname)
        if self._stranger(address):
            obs.count_stranger_rcpt(self.host.hostname)
        server.rcpt_count += 1
        server.transaction_rcpts += 1
        if server.fault == "disconnect" and server.transport is not None:
            _abort(server.transport)  # mid-conversation, without a reply
            return GREYLISTED  # never sent: the connection is gone
        limited = self._rate_limited(server)
        if limited is not None:
            obs.count_smtp_rate_limited(self.host.hostname)
            return limited
        reply = self._rcpt_reply(server, envelope, address)
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(options)
        return reply

    def _rate_limited(self, server: MailSession) -> str | None:
        """The host's rate reply when this client has used its RCPT budget (max_rcpt_per_minute,
        or obs.faults.max_rcpt_per_minute for every host) within the window; else None."""
        faults = self.mail.obs.faults
        limit = faults.max_rcpt_per_minute
        if limit is None:
            limit = self.host.max_rcpt_per_minute
        if limit is None or self.mail.obs.take_rcpt_budget(
            self.host.ip, server.peer_ip, limit, faults.rcpt_rate_window_seconds
        ):
            return None
        reply = self.host.rate_limit_reply or RATE_LIMIT_REPLIES.get(
            self.host.provider, RATE_LIMIT_REPLIES[None]
        )
        return reply.format(client=server.peer_ip, host=self.host.hostname)

    def _stranger(self, address: str) -> bool:
        """An address of no Person (deleted ones included) and no role mailbox: what a verifier's
        catch-all probe (a random local part) looks like from the server."""
        local = address.rpartition("@")[0].strip()
        if local in ROLE_MAILBOXES:
            return False
        return self.mail.world.person_by_email(address, deleted_too=True) is None

    def _rcpt_reply(self, server: MailSession, envelope: Envelope, address: str) -> str:
        host = self.host
        if host.max_rcpt_per_session is not None and server.rcpt_count > host.max_rcpt_per_session:
            # counted per connection: RSET does not reset it (Outlook.com: one RCPT per session)
            self.mail.obs.count_rcpt_limit_rejection(host.hostname)
            return host.rcpt_limit_reply or TOO_MANY_RCPT
        if server.fault == "greylist":
            return GREYLISTED
        check = self.mail.obs.faults.smtp_sender_domain_check
        if check is not None and not self.mail.world.resolves(_domain_of(envelope.mail_from)):
            return SENDER_DOMAIN_NOT_FOUND.format(
                code=check, klass=str(check)[0], sender=envelope.mail_from or ""
            )
        domain = _domain_of(address)
        if host.one_domain_per_transaction and any(
            _domain_of(accepted) != domain for accepted in envelope.rcpt_tos
        ):
            self.mail.obs.count_mixed_domain_rejection(host.hostname)
            return GOOGLE_MIXED_DOMAINS
        ok = (host.ok_reply or OK).format(rcpt=address)
        if host.behavior in ("catch_all", "accept_all") or domain in host.catch_all_domains:
            return ok
        if host.behavior == "policy_block":
            return RBL_BLOCK.format(client=server.peer_ip)
        if host.behavior == "greylist":
            left = self._greylist_left(server.peer_ip, envelope.mail_from or "", address)
            if left > 0:
                seconds = max(1, math.ceil(left))
                return (host.greylist_reply or GREYLISTED).format(rcpt=address, seconds=seconds)
        state = self.mail.world.mailbox_state(address)
        if state == "exists":
            return ok
        if state == "disabled":
            return (host.disabled_reply or DISABLED).format(rcpt=address)
        if state == "full":
            return FULL
        return host.unknown_reply.format(rcpt=address)

    async def handle_exception(self, error: Exception) -> str:
        """A client's failed TLS handshake is routine; anything else is a sandbox bug to show."""
        if isinstance(error, TLSSetupException):
            log.debug("STARTTLS handshake failed on %s", self.host.hostname)
        else:
            log.exception("mail host %s failed", self.host.hostname)
        return "451 4.3.0 Error: local error in processing"

    def _greylist_left(self, client: str, sender: str, rcpt: str) -> float:
        """Seconds until the greylist window of a (client, sender, recipient) triplet ends, from
        when it was first seen (0 or less: it passes). The window is the host's
        ``greylist_seconds`` unless ``obs.faults.greylist_seconds`` overrides it."""
        now = time.monotonic()
        first = self.mail.greylist.setdefault((client, sender.lower(), rcpt), now)
        window = self.mail.obs.faults.greylist_seconds
        return (self.host.greylist_seconds if window is None else window) - (now - first)


class MailSession(SMTP):
    """One SMTP connection to one mail host."""

    rcpt_count = 0  # RCPTs of the connection (RSET or not)
    transaction_rcpts = 0  # RCPTs since the transaction began (set before __init__ runs)

    def __init__(self, handler: MailHost) -> None:
        host = handler.host
        super().__init__(
            handler,
            hostname=host.hostname,
            ident=host.ident or ("ESMTP Postfix" if host.esmtp else "SMTP ready"),
            tls_context=handler.mail.tls_context if host.require_starttls else None,
            enable_SMTPUTF8=host.esmtp,
            timeout=IDLE_TIMEOUT,
            loop=asyncio.get_running_loop(),
        )
        self.host = host
        self.mail = handler.mail
        self.peer_ip = ""
        self.fault: str | None = None  # a session fault from obs.faults, rolled at connect
        self._counted = False
        self._continuing = False  # inside a multi-line reply: delay only before its first line
        self._arrived = 0.0  # loop time the client's latest bytes arrived

    # ------------------------------------------------------------------ connection accounting
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = not self._counted
        super().connection_made(transport)  # also called again when STARTTLS swaps the transport
        if first:
            self._counted = True
            # Multi-line replies go out one write per line: without TCP_NODELAY, Nagle's algorithm
            # and the client's delayed ACK add ~40 ms to every EHLO (asyncio only sets it on
            # sockets created with proto=IPPROTO_TCP, which pre-bound sockets are not).
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = transport.get_extra_info("peername")
            self.peer_ip = peer[0] if peer else ""
            self.mail.open_now[self.host.ip] += 1
            self.mail.sessions.add(self)
            self.mail.obs.smtp_opened(self.host.ip)
            self._arrived = asyncio.get_running_loop().time()

    def data_received(self, data: bytes) -> None:
        """Stamp arrival: latency is a round trip, counted from when the command came in, so the
        replies to a pipelined group all come back one latency after the group (RFC 2920)."""
        self._arrived = asyncio.get_running_loop().time()
        super().data_received(data)

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted:
            self._counted = False
            self.mail.open_now[self.host.ip] -= 1
            self.mail.sessions.discard(self)
            self.mail.obs.smtp_closed(self.host.ip)
            self._end_transaction()
            self.mail.obs.record_session(self.host.hostname, self.rcpt_count)
        super().connection_lost(error)

    def _set_post_data_state(self) -> None:
        """A new envelope: the transaction ends (RSET, EHLO, HELO, after DATA, at connect).
        aiosmtpd's own (untyped) version does only the assignment."""
        self._end_transaction()
        self.envelope = self._create_envelope()

    def _end_transaction(self) -> None:
        if self.transaction_rcpts:
            self.mail.obs.record_transaction(self.host.hostname, self.transaction_rcpts)
            self.transaction_rcpts = 0

    # ------------------------------------------------------ behaviour at connect and per reply
    async def _handle_client(self) -> None:
        host = self.host
        self.fault = self._roll_fault()
        try:
            if self.fault == "busy_421" or (
                host.max_connections is not None
                and self.mail.open_now[host.ip] > host.max_connections
            ):
                await self._refuse(BUSY)
            elif host.ip in self.mail.banner_block:
                await self._refuse(BANNER_BLOCK.format(hostname=host.hostname))
            elif host.behavior == "drop_after_banner":
                await self._refuse(f"220 {self.hostname} {self.__ident__}")
            else:
                await super()._handle_client()
        except ConnectionError:
            pass  # the client went away mid-reply; connection_lost does the accounting
        finally:
            # aiosmtpd leaves a half-closed socket open when the client hangs up during the banner.
            if self.transport is not None:
                self.transport.close()

    def _roll_fault(self) -> str | None:
        faults = self.mail.obs.faults
        kinds, rate = faults.smtp_fault, faults.smtp_fault_rate
        if not kinds or rate <= 0:
            return None
        kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
        if not set(kinds) <= SESSION_FAULTS:
            raise ValueError(f"smtp_fault must be among {sorted(SESSION_FAULTS)}, not {kinds!r}")
        if rate >= 1 or self.mail.fault_rng.random() < rate:
            kind = kinds[0] if len(kinds) == 1 else self.mail.fault_rng.choice(kinds)
            self.mail.obs.count_fault(f"smtp_{kind}")
            return kind
        return None

    async def _refuse(self, reply: str) -> None:
        await self.push(reply)
        if self.transport is not None:
            self.transport.close()

    async def push(self, status: Any) -> None:
        if not self._continuing:
            delay = self._reply_delay()
            if delay > 0:
                await asyncio.sleep(delay)
        marker = status[3:4]
        self._continuing = marker in ("-", b"-")
        if not self.host.enhanced_status_codes and isinstance(status, str):
            status = _ENHANCED_CODE.sub(r"\1", status)
        await super().push(status)
        if status[:4] in ("421 ", b"421 ") and self.transport is not None:
            # "421 ... closing transmission channel": the reply is flushed, then the connection
            # closed, and no later command (pipelined ones included) is read.
            self.transport.close()
            raise _ChannelClosed

    def _reply_delay(self) -> float:
        """Seconds to wait before a reply: what is left of one latency since the command arrived
        (nothing for the later replies of a pipelined group), plus any tarpit, which stalls every
        reply on purpose."""
        latency = self.mail.obs.faults.smtp_latency
        latency = self.host.latency if latency is None else latency
        delay = 0.0
        if latency > 0:
            delay = max(0.0, self._arrived + latency - asyncio.get_running_loop().time())
        if self.host.behavior == "tarpit":
            delay += self.host.tarpit_seconds
        if self.fault == "tarpit":
            delay += self.mail.obs.faults.smtp_tarpit_seconds
        return delay

    @syntax("RSET")
    async def smtp_RSET(self, arg: str) -> None:
        """Counted per host; a host with ``refuse_rset`` answers 502 and keeps the transaction."""
        self.mail.obs.count_rset(self.host.hostname)
        if self.host.refuse_rset:
            await self.push(RSET_REFUSED)
            return
        await super().smtp_RSET(arg)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """A verifier never sends DATA; the sandbox delivers nothing."""
        if await self.check_helo_needed():
            return
        await self.push(NO_MESSAGES)


class SmtpServers:
    """Every mail host's listener: ``port`` (shared by all hosts) and ``close()``."""

    def __init__(self, mail: MailWorld) -> None:
        self.mail = mail
        self.port = 0
        self._servers: list[asyncio.base_events.Server] = []

    async def start(self, port: int) -> SmtpServers:
        hosts = list(self.mail.world.smtp_hosts.values())
        if not hosts:
            self.port = port
            return self
        loop = asyncio.get_running_loop()
        socks = bind_on_one_port(
            [(h.ip, socket.SOCK_STREAM) for h in hosts],
            port,
            busy="no port is free on every mail host address; pass an explicit free port",
        )
        self.port = socks[0].getsockname()[1]
        try:
            for host, sock in zip(hosts, socks, strict=True):
                handler = MailHost(host, self.mail)
                server = await loop.create_server(
                    functools.partial(MailSession, handler), sock=sock, backlog=BACKLOG
                )
                self._servers.append(server)
        except BaseException:
            for sock in socks:
                sock.close()
            await self.close()
            raise
        return self

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        tasks = []
        for session in list(self.mail.sessions):
            if session.transport is not None:
                _abort(session.transport)
            if session._handler_coroutine is not None:
                tasks.append(session._handler_coroutine)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()


async def start_smtp(world: World, obs: Observatory, *, port: int = 0) -> SmtpServers:
    """Serve every ``world.smtp_hosts`` address on one port (0 picks one free on all of them)."""
    # aiosmtpd logs every recipient at INFO; addresses are personal data and stay out of INFO logs.
    aiosmtpd_log = logging.getLogger("mail.log")
    if aiosmtpd_log.level == logging.NOTSET:
        aiosmtpd_log.setLevel(logging.WARNING)
    tls_names = [h.hostname for h in world.smtp_hosts.values() if h.require_starttls]
    policy_ips = sorted(
        (h.ip for h in world.smtp_hosts.values() if h.behavior == "policy_block"),
        key=address_key,
    )
    mail = MailWorld(
        world=world,
        obs=obs,
        tls_context=server_tls_context(tls_names) if tls_names else None,
        banner_block=frozenset(policy_ips[1::2]),  # every other policy host refuses at the banner
        fault_rng=random.Random(f"{world.seed}:smtp-faults"),
    )
    return await SmtpServers(mail).start(port)
