"""Hostile mail servers: one misbehaviour per server, for testing the verifier's SMTP prober.

Whoever signs up chooses the mail servers a verifier talks to, so each server here does one thing
a polite server never would (stay silent, answer EHLO forever, trickle bytes, send odd codes...)
and is otherwise an ordinary, accepting SMTP server. Built on plain asyncio streams (aiosmtpd is
too polite for this); every server listens on one loopback address and port, records every line
it receives exactly as read, and is stopped by whoever started it (``await server.close()``).

``add_hostile_zone`` publishes hostile DNS (MX at multicast, private or unspecified addresses, many
MX or many A records) in a world's zone, for the sandbox DNS server to answer from.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Final

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from .loopback import bind_on_one_port, bind_socket, ensure_loopback
from .world import World

log = logging.getLogger(__name__)

__all__ = [
    "BEHAVIOURS",
    "MAX_COMMANDS",
    "MAX_LINE",
    "HostileSmtp",
    "add_hostile_zone",
    "start_hostile_fleet",
    "start_hostile_smtp",
]

BEHAVIOURS: Final[dict[str, str]] = {
    "silent": "accepts the connection, reads and never sends a byte",
    "slow_banner": (
        "sends the banner after `delay` seconds (required), then behaves; PIPELINING when "
        "`pipelining=True`"
    ),
    "endless_ehlo": "answers EHLO with 250- continuation lines forever, never a final line",
    "huge_line": "answers EHLO with one line that never ends (bytes forever, no CRLF)",
    "trickle": "sends every reply one byte at a time, `byte_delay` seconds apart (default 1.0)",
    "just_under": "sends every reply, banner included, whole after `delay` seconds (required)",
    "rcpt_code": "answers RCPT with `reply` (required; str or bytes, CRLF added if missing)",
    "echo": "the ordinary accepting server (every server records the lines it receives)",
    "many_lines": "answers EHLO with `lines` continuation lines (default 10,000), then 250 OK",
    "drop_after_banner": "sends the banner, then closes the connection",
    "pipelining_fewer": (
        "advertises PIPELINING and never answers the `missing`-th RCPT of a transaction "
        "(default 2): N RCPTs get N-1 replies, then it waits"
    ),
    "pipelining_more": (
        "advertises PIPELINING and sends one extra `250 2.1.5 OK` per transaction, after the "
        "reply to a RCPT when no further line has been received"
    ),
    "pipelining_strict": (
        "no PIPELINING; a command received before the reply to the one before it was sent "
        "gets `554 5.5.0 pipelining not allowed` and is not carried out"
    ),
    "no_pipelining": "the ordinary server, named: no PIPELINING in EHLO, answers line by line",
    "rset_refused": (
        "answers RSET `502 5.5.2 Error: command not recognized` and keeps the transaction "
        "(a second MAIL gets `503 5.5.1 Error: nested MAIL command`); PIPELINING unless "
        "`pipelining=False`"
    ),
    "drop_mid_transaction": (
        "closes the connection right after its reply to the `after`-th RCPT of a transaction "
        "(default 2); PIPELINING unless `pipelining=False`"
    ),
}

_REQUIRED: Final = object()
#: The parameters each behaviour takes, with their defaults (_REQUIRED: no default).
_PARAMS: Final[dict[str, dict[str, object]]] = {
    "slow_banner": {"delay": _REQUIRED, "pipelining": False},
    "trickle": {"byte_delay": 1.0},
    "just_under": {"delay": _REQUIRED},
    "rcpt_code": {"reply": _REQUIRED},
    "many_lines": {"lines": 10_000},
    "pipelining_fewer": {"missing": 2},
    "rset_refused": {"pipelining": True},
    "drop_mid_transaction": {"after": 2, "pipelining": True},
}
#: The behaviours that always advertise PIPELINING (two more do unless told not to).
_PIPELINING: Final = frozenset({"pipelining_fewer", "pipelining_more"})

#: `HostileSmtp.commands` keeps the first this many lines.
MAX_COMMANDS: Final = 10_000
#: A longer line is recorded in pieces of this size (no LF but the last), answered once with 500.
MAX_LINE: Final = 8 * 1024
_READ_CHUNK: Final = 64 * 1024
#: Lines read but not yet answered, per connection; a client that floods waits on TCP.
_QUEUED_LINES: Final = 100
_STREAM_CHUNK_LINES: Final = 64  # endless and many-line replies are written this many at a time
_CLOSE_GRACE: Final = 1.0  # seconds a closing connection gets to flush before it is dropped

BANNER: Final = b"220 hostile.example ESMTP\r\n"
EHLO_FIRST: Final = b"250-hostile.example\r\n"
EHLO_REPLY: Final = EHLO_FIRST + b"250 ENHANCEDSTATUSCODES\r\n"
EHLO_PIPELINING: Final = EHLO_FIRST + b"250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n"
ENDLESS_LINE: Final = b"250-X" + b"-" * 60 + b"\r\n"
_REPLIES: Final[dict[bytes, bytes]] = {
    b"HELO": b"250 hostile.example\r\n",
    b"MAIL": b"250 2.1.0 OK\r\n",
    b"RCPT": b"250 2.1.5 OK\r\n",
    b"RSET": b"250 2.0.0 OK\r\n",
    b"NOOP": b"250 2.0.0 OK\r\n",
    b"VRFY": b"252 2.5.2 Cannot VRFY user\r\n",
    b"STARTTLS": b"502 5.5.1 STARTTLS not offered\r\n",
    b"DATA": b"354 End data with <CR><LF>.<CR><LF>\r\n",
    b"QUIT": b"221 2.0.0 Bye\r\n",
}
_UNRECOGNIZED: Final = b"500 5.5.2 Command unrecognized\r\n"
_TOO_LONG: Final = b"500 5.5.6 Line too long\r\n"
_QUEUED: Final = b"250 2.0.0 OK queued\r\n"
_NOT_PIPELINING: Final = b"554 5.5.0 pipelining not allowed\r\n"
_RSET_REFUSED: Final = b"502 5.5.2 Error: command not recognized\r\n"
_NESTED_MAIL: Final = b"503 5.5.1 Error: nested MAIL command\r\n"


@dataclass(frozen=True)
class _Settings:
    delay: float = 0.0
    byte_delay: float = 0.0
    reply: bytes = b""
    lines: int = 0
    missing: int = 0  # pipelining_fewer: the RCPT (from 1) of each transaction left unanswered
    after: int = 0  # drop_mid_transaction: the RCPT (from 1) after whose reply it hangs up
    pipelining: bool = False  # rset_refused, drop_mid_transaction: PIPELINING in EHLO


def _seconds(behaviour: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{behaviour}: {name} must be a number of seconds >= 0, not {value!r}")
    return float(value)


def _settings(behaviour: str, params: Mapping[str, object]) -> _Settings:
    if behaviour not in BEHAVIOURS:
        raise ValueError(
            f"unknown hostile SMTP behaviour {behaviour!r}; one of: {', '.join(BEHAVIOURS)}"
        )
    allowed = _PARAMS.get(behaviour, {})
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        takes = ", ".join(allowed) or "no parameters"
        raise ValueError(f"{behaviour}: unknown parameter(s) {', '.join(unknown)} (takes {takes})")
    values = {name: params.get(name, default) for name, default in allowed.items()}
    missing = [name for name, value in values.items() if value is _REQUIRED]
    if missing:
        raise ValueError(f"{behaviour}: parameter(s) {', '.join(missing)} required")
    settings = _Settings()
    for name, value in values.items():
        if name == "delay":
            settings = replace(settings, delay=_seconds(behaviour, name, value))
        elif name == "byte_delay":
            settings = replace(settings, byte_delay=_seconds(behaviour, name, value))
        elif name == "lines":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{behaviour}: lines must be an integer >= 0, not {value!r}")
            settings = replace(settings, lines=value)
        elif name in ("missing", "after"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{behaviour}: {name} must be an integer >= 1, not {value!r}")
            if name == "missing":
                settings = replace(settings, missing=value)
            else:
                settings = replace(settings, after=value)
        elif name == "pipelining":
            if not isinstance(value, bool):
                raise ValueError(f"{behaviour}: pipelining must be True or False, not {value!r}")
            settings = replace(settings, pipelining=value)
        else:  # reply
            reply = value.encode("utf-8") if isinstance(value, str) else value
            if not isinstance(reply, bytes):
                raise ValueError(f"{behaviour}: reply must be str or bytes, not {value!r}")
            settings = replace(
                settings, reply=reply if reply.endswith(b"\r\n") else reply + b"\r\n"
            )
    return settings


class _ClientGone(Exception):
    """The client closed its side of the connection (or broke it): the session ends."""


class _Session:
    """One client connection: a reader task records lines as they arrive; the conversation
    answers them in order, the way the server's behaviour says."""

    def __init__(
        self, server: HostileSmtp, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.lines: asyncio.Queue[bytes | None] = asyncio.Queue(_QUEUED_LINES)
        # For each queued line, how many replies had been started when it arrived: a line that
        # arrived before the reply to the line before it was pipelined (pipelining_strict).
        self.arrivals: deque[int] = deque()
        self.replies = 0  # replies started so far, the banner included
        self.gone = asyncio.Event()  # EOF or a broken connection seen by the reader
        # The transaction (MAIL to RSET, EHLO or HELO): open or not, its RCPTs, the extra reply
        self.in_transaction = False
        self.transaction_rcpts = 0
        self.extra_sent = False

    async def run(self) -> None:
        reading = asyncio.create_task(self._read_lines(), name="hostile-smtp-reader")
        try:
            await self._converse()
        finally:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)

    # ------------------------------------------------------------------ receiving
    async def _read_lines(self) -> None:
        pending = b""
        try:
            while True:
                chunk = await self.reader.read(_READ_CHUNK)
                if not chunk:
                    break
                pending += chunk
                while True:
                    end = pending.find(b"\n")
                    if end < 0 and len(pending) <= MAX_LINE:
                        break
                    cut = end + 1 if 0 <= end < MAX_LINE else MAX_LINE
                    line, pending = pending[:cut], pending[cut:]
                    self.server._record(line)
                    self.arrivals.append(self.replies)
                    await self.lines.put(line)
        except (ConnectionError, OSError):
            pass
        if pending:  # a last line without LF: received, recorded, never a command
            self.server._record(pending)
        self.gone.set()
        await self.lines.put(None)

    # ------------------------------------------------------------------ sending
    async def _write(self, data: bytes) -> None:
        if self.writer.is_closing():
            raise _ClientGone
        self.writer.write(data)
        self.server.bytes_sent += len(data)
        await self.writer.drain()

    async def _pause(self, seconds: float) -> None:
        """Sleep, unless the client goes away first (then the session ends)."""
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.gone.wait()
        if self.gone.is_set():
            raise _ClientGone

    async def _next_line(self) -> tuple[bytes, bool] | None:
        """The next line received, and whether it arrived before the previous reply was sent;
        None once the client has gone."""
        line = await self.lines.get()
        if line is None:
            return None
        early = self.arrivals.popleft() < self.replies
        if early and len(self.server.pipelined) < MAX_COMMANDS:
            self.server.pipelined.append(line)
        return line, early

    async def _reply(self, data: bytes) -> None:
        self.replies += 1
        behaviour, settings = self.server.behaviour, self.server.settings
        if behaviour == "trickle":
            for i in range(len(data)):
                if i:
                    await self._pause(settings.byte_delay)
                await self._write(data[i : i + 1])
            return
        if behaviour == "just_under":
            await self._pause(settings.delay)
        await self._write(data)

    async def _stream_forever(self, first: bytes, chunk: bytes) -> None:
        """`first`, then `chunk` over and over, as fast as the client reads, until it goes."""
        await self._write(first)
        while not self.gone.is_set():
            await self._write(chunk)
        raise _ClientGone

    async def _many_lines(self, count: int) -> None:
        await self._write(EHLO_FIRST)
        for start in range(1, count, _STREAM_CHUNK_LINES):
            stop = min(count, start + _STREAM_CHUNK_LINES)
            await self._write(b"".join(b"250-LINE%d\r\n" % n for n in range(start, stop)))
        await self._write(b"250 OK\r\n")

    # ------------------------------------------------------------------ the conversation
    async def _converse(self) -> None:
        behaviour = self.server.behaviour
        if behaviour == "silent":
            while await self._next_line() is not None:
                pass
            return
        if behaviour == "slow_banner":
            await self._pause(self.server.settings.delay)
        await self._reply(BANNER)
        if behaviour == "drop_after_banner":
            return
        overlong = False
        while True:
            got = await self._next_line()
            if got is None:
                return
            line, early = got
            if not line.endswith(b"\n"):  # a piece of an overlong line
                overlong = True
                continue
            if overlong:
                overlong = False
                await self._reply(_TOO_LONG)
                continue
            if early and behaviour == "pipelining_strict":
                await self._reply(_NOT_PIPELINING)
                continue
            words = line.split(None, 1)
            verb = words[0].upper() if words else b""
            if verb in (b"EHLO", b"HELO"):
                self._end_transaction()
            if verb == b"EHLO":
                await self._ehlo()
            elif verb == b"RCPT":
                if not await self._rcpt():
                    return
            elif verb == b"MAIL":
                if self.in_transaction and behaviour == "rset_refused":
                    await self._reply(_NESTED_MAIL)
                else:
                    self._end_transaction()
                    self.in_transaction = True
                    await self._reply(_REPLIES[b"MAIL"])
            elif verb == b"RSET" and behaviour == "rset_refused":
                await self._reply(_RSET_REFUSED)
            elif verb == b"DATA":
                await self._reply(_REPLIES[b"DATA"])
                while (body := await self.lines.get()) not in (b".\r\n", b".\n"):
                    if body is None:
                        return
                    self.arrivals.popleft()
                self.arrivals.popleft()
                self._end_transaction()
                await self._reply(_QUEUED)
            else:
                if verb == b"RSET":
                    self._end_transaction()
                await self._reply(_REPLIES.get(verb, _UNRECOGNIZED))
                if verb == b"QUIT":
                    return

    def _end_transaction(self) -> None:
        self.in_transaction = False
        self.transaction_rcpts = 0
        self.extra_sent = False

    async def _rcpt(self) -> bool:
        """Answer one RCPT the behaviour's way; False when the session is to end."""
        behaviour, settings = self.server.behaviour, self.server.settings
        self.transaction_rcpts += 1
        if behaviour == "rcpt_code":
            await self._reply(settings.reply)
            return True
        if behaviour == "pipelining_fewer" and self.transaction_rcpts == settings.missing:
            return True  # never answered
        await self._reply(_REPLIES[b"RCPT"])
        if behaviour == "pipelining_more" and not self.extra_sent and self.lines.empty():
            self.extra_sent = True
            await self._reply(_REPLIES[b"RCPT"])
        return not (
            behaviour == "drop_mid_transaction" and self.transaction_rcpts == settings.after
        )

    async def _ehlo(self) -> None:
        behaviour = self.server.behaviour
        if behaviour == "endless_ehlo":
            await self._stream_forever(EHLO_FIRST, ENDLESS_LINE * _STREAM_CHUNK_LINES)
        elif behaviour == "huge_line":
            await self._stream_forever(b"250 hostile.example ", b"x" * 16384)
        elif behaviour == "many_lines":
            await self._many_lines(self.server.settings.lines)
        elif behaviour in _PIPELINING or self.server.settings.pipelining:
            await self._reply(EHLO_PIPELINING)
        else:
            await self._reply(EHLO_REPLY)


class HostileSmtp:
    """One running hostile server. `close()` stops it and drops every open connection."""

    def __init__(self, behaviour: str, settings: _Settings, host: str, port: int) -> None:
        self.behaviour = behaviour
        self.settings = settings
        self.host = host
        self.port = port
        self.connections = 0  # TCP connections accepted so far
        self.commands: list[bytes] = []  # every line received, as read (first MAX_COMMANDS)
        # the lines that arrived before the reply to the line before them: sent pipelined
        self.pipelined: list[bytes] = []
        self.bytes_sent = 0  # bytes handed to clients' connections
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<HostileSmtp {self.behaviour} on {self.host}:{self.port}>"

    @property
    def open_connections(self) -> int:
        """Sessions still running (a connection whose session ended is closed or closing)."""
        return len(self._tasks)

    async def _serve_on(self, sock: socket.socket) -> HostileSmtp:
        self._server = await asyncio.start_server(self._accept, sock=sock, backlog=128)
        return self

    def _record(self, line: bytes) -> None:
        if len(self.commands) < MAX_COMMANDS:
            self.commands.append(line)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain callback (not a coroutine): the session's task is registered before anything
        # else runs, so close() always finds it.
        if self._closing is not None:
            writer.transport.abort()
            return
        self.connections += 1
        task = asyncio.get_running_loop().create_task(
            self._serve(reader, writer), name=f"hostile-smtp-{self.behaviour}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        graceful = False
        try:
            await _Session(self, reader, writer).run()
            graceful = True
        except (_ClientGone, ConnectionError, OSError):
            pass  # the client went away mid-reply: the session ends, the server goes on
        except asyncio.CancelledError:
            raise  # close(): the connection is dropped below
        except Exception:  # never let one client's behaviour take the server down
            log.debug("hostile SMTP session failed", exc_info=True)
        finally:
            try:
                if graceful:
                    writer.close()  # flush the last reply (221, the banner) first
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(_CLOSE_GRACE):
                            await writer.wait_closed()
            finally:
                # Closed by now, unless the session was cut short, or the client never read its
                # last reply, or close() came during the grace: then the connection is dropped.
                writer.transport.abort()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    async def close(self) -> None:
        """Stop listening, drop every open connection and wait for their tasks; idempotent."""
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> HostileSmtp:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on a loopback address: 127.0.0.0/8 (through loopback.py) or ::1."""
    if ipaddress.ip_address(ensure_loopback(host)).version == 4:
        return bind_socket(host, port)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


async def start_hostile_smtp(
    behaviour: str, *, host: str = "127.0.0.1", port: int = 0, **params: object
) -> HostileSmtp:
    """Serve one hostile behaviour (a key of BEHAVIOURS) on a loopback `host:port`.

    Port 0 picks a free port (``server.port``). An unknown behaviour or parameter, a missing
    required parameter or a host off loopback is a ValueError.
    """
    settings = _settings(behaviour, params)
    sock = _bind(host, port)
    try:
        return await HostileSmtp(behaviour, settings, host, sock.getsockname()[1])._serve_on(sock)
    except BaseException:
        sock.close()
        raise


FleetSpec = str | tuple[str, Mapping[str, object]]


async def start_hostile_fleet(
    servers: Mapping[str, FleetSpec], *, port: int = 0
) -> dict[str, HostileSmtp]:
    """Several hostile servers on one port, one per IPv4 loopback address.

    The prober dials every MX on one port (`smtp_port`), so hosts meant for one domain's MX set
    must share it. `servers` maps an address to a behaviour, or to ``(behaviour, params)``:
    ``{"127.0.66.1": "silent", "127.0.66.2": ("trickle", {"byte_delay": 0.1})}``. Returns the
    servers by address; close each (a failed start closes those already started).
    """
    specs: dict[str, tuple[str, dict[str, object]]] = {
        host: (spec, {}) if isinstance(spec, str) else (spec[0], dict(spec[1]))
        for host, spec in servers.items()
    }
    if not specs:
        return {}
    settings = {host: _settings(name, params) for host, (name, params) in specs.items()}
    hosts = [ensure_loopback(host) for host in specs]
    socks = bind_on_one_port(
        [(host, socket.SOCK_STREAM) for host in hosts],
        port,
        busy="no port is free on every hostile SMTP address; pass an explicit free port",
    )
    started: dict[str, HostileSmtp] = {}
    try:
        for host, sock in zip(hosts, socks, strict=True):
            server = HostileSmtp(specs[host][0], settings[host], host, sock.getsockname()[1])
            started[host] = await server._serve_on(sock)
    except BaseException:
        for server in started.values():
            await server.close()
        for sock in socks[len(started) :]:
            sock.close()
        raise
    return started


# ---------------------------------------------------------------------------------- hostile DNS
def _name(name: str) -> str:
    """A zone key (lower case, no trailing dot), checked as a DNS name now rather than at query
    time (where the DNS server would drop the query silently)."""
    key = name.strip().lower().rstrip(".")
    try:
        if not key:
            raise dns.name.EmptyLabel
        dns.name.from_text(key)
    except dns.exception.DNSException as exc:
        raise ValueError(f"not a DNS name: {name!r} ({type(exc).__name__})") from None
    return key


def _by_family(addresses: Sequence[str], where: str) -> tuple[list[str], list[str]]:
    """The addresses split into (IPv4 for A records, IPv6 for AAAA records), in order."""
    v4: list[str] = []
    v6: list[str] = []
    for text in addresses:
        try:
            address = ipaddress.ip_address(text.strip())
        except ValueError:
            raise ValueError(f"{where}: not an IP address: {text!r}") from None
        (v4 if address.version == 4 else v6).append(text.strip())
    return v4, v6


def add_hostile_zone(
    world: World,
    domain: str,
    *,
    mx: Sequence[str] | None = None,
    a: Sequence[str] | None = None,
    aaaa: Sequence[str] | None = None,
    hosts: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Publish hostile DNS for `domain` in `world.zone` (the sandbox DNS server answers from it).

    - `mx`: host names, published as MX records with preferences 10, 20, 30, ... in that order
      (an IP-looking name such as ``10.0.0.1`` is published as a name, as a careless admin would);
    - `a` / `aaaa`: A / AAAA records of `domain` itself (with `mx` None: an implicit MX);
    - `hosts`: host name -> addresses, each published as A or AAAA by its address family (names
      may repeat the MX names or `domain` itself).

    Records given replace that name's records of the same type (a host in `hosts` gets exactly
    the A and AAAA records listed, either possibly none); nothing else of the zone changes. The
    domain is not added to ``world.domains``: negative answers carry the TLD's SOA, and the
    world's ground truth knows nothing of it. Any malformed name or address is a ValueError now.
    """
    key = _name(domain)
    records: dict[str, dict[str, list[str]]] = {}
    own = records.setdefault(key, {})
    if mx is not None:
        own["MX"] = [f"{10 * (i + 1)} {_name(host)}." for i, host in enumerate(mx)]
    for rdtype, given, version in (("A", a, 4), ("AAAA", aaaa, 6)):
        if given is None:
            continue
        v4, v6 = _by_family(given, f"{domain} {rdtype}")
        if v6 if version == 4 else v4:
            raise ValueError(f"{domain}: {rdtype} records take IPv{version} addresses only")
        own[rdtype] = v4 if version == 4 else v6
    for host, addresses in (hosts or {}).items():
        v4, v6 = _by_family(addresses, host)
        entry = records.setdefault(_name(host), {})
        entry["A"], entry["AAAA"] = v4, v6
    for name, types in records.items():  # parse every record now, as the DNS server would
        for rdtype, texts in types.items():
            for text in texts:
                try:
                    dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), text)
                except dns.exception.DNSException as exc:
                    raise ValueError(f"{name} {rdtype} {text!r}: {exc}") from None
    for name, types in records.items():
        # Each name's records replaced whole: a DNS server on another thread reading the zone
        # sees the old records or the new ones, never a dict changing under it.
        world.zone[name] = {**world.zone.get(name, {}), **types}
