"""A small asyncio SMTP client: just enough protocol to ask a mail server about recipients.

Async streams (no thread per connection), multi-line replies, enhanced status codes, EHLO with HELO
fallback, opportunistic STARTTLS, optional SOCKS5. Every reply is kept for the evidence trail.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ssl
from dataclasses import dataclass, field

from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError
from python_socks.async_.asyncio import Proxy

from mapper_emailverify.engine.address_policy import classify, may_contact
from mapper_emailverify.engine.result import SmtpReply
from mapper_emailverify.engine.smtp.replies import Reply

_UNREACHABLE_ERRNOS = {
    errno.ENETUNREACH,
    errno.EHOSTUNREACH,
    errno.ETIMEDOUT,
    errno.EACCES,
    errno.EPERM,
}
_SOCKS_UNREACHABLE = {3, 4, 6}  # network unreachable, host unreachable, TTL expired
# Seconds for the server to process our TLS close before the mail host's slot is reused.
TLS_CLOSE_GRACE = 0.05


#: Caps on one reply (RFC 5321 4.5.3.1.5 allows 512 octets a line; real EHLO replies have a few
#: dozen lines). aiosmtplib's 8,192-byte line limit is the model; beyond these the server is broken
#: or hostile, and reading on would only grow our memory.
MAX_LINE_BYTES = 8192
MAX_REPLY_LINES = 200
MAX_REPLY_BYTES = 64 * 1024


class SmtpFailure(Exception):
    """The conversation broke (no usable reply).

    `kind` is timeout, refused, unreachable, proxy, closed, tls, protocol (a reply that is not
    SMTP, or too big) or not_public (the address may not be dialled, see `address_policy`).
    """

    def __init__(self, kind: str, stage: str, detail: str = "") -> None:
        super().__init__(f"{stage}: {kind}{' (' + detail + ')' if detail else ''}")
        self.kind, self.stage, self.detail = kind, stage, detail


@dataclass(frozen=True)
class Timeouts:
    connect: float
    banner: float
    command: float


def reply_code(line: str) -> int | None:
    """The code of one reply line when it is well formed under RFC 5321 4.2 (first digit 2 to 5,
    second 0 to 5, then a space, a hyphen or the end of the line), else None."""
    if (
        len(line) < 3
        or line[0] not in "2345"
        or line[1] not in "012345"
        or line[2] not in "0123456789"
        or line[3:4] not in ("", " ", "-")
    ):
        return None
    return int(line[:3])


@functools.cache
def _insecure_context() -> ssl.SSLContext:
    # Opportunistic TLS: we only ask questions, so an unverified certificate is no risk worth
    # failing on (and skipping the CA store saves ~25 ms of CPU per context).
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@dataclass
class SmtpSession:
    """One connection to one mail host."""

    host: str  # the MX name, for evidence
    ip: str
    port: int
    timeouts: Timeouts
    proxy_url: str | None = None
    transcript: list[SmtpReply] = field(default_factory=list)
    extensions: set[str] = field(default_factory=set)
    tls: bool = False
    broken: bool = False  # a timeout or a dropped connection: no point in a polite QUIT
    #: Dial loopback/private/link-local addresses too (`allow_private_mx`).
    allow_private: bool = False
    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None

    async def connect(self) -> Reply:
        """Open the connection and read the banner."""
        await self.dial()
        return await self._read("banner", self.timeouts.banner)

    async def dial(self) -> None:
        """Open the TCP connection (through the SOCKS proxy when set), within the connect budget.

        The address policy is checked first: nothing is sent to an address it does not allow.
        """
        if not may_contact(self.ip, allow_private=self.allow_private):
            # The prober filters these out before; this is the last line of defence.
            raise SmtpFailure("not_public", "connect", str(classify(self.ip)))
        try:
            async with asyncio.timeout(self.timeouts.connect):
                if self.proxy_url:
                    sock = await Proxy.from_url(self.proxy_url).connect(self.ip, self.port)
                    self._reader, self._writer = await asyncio.open_connection(
                        sock=sock, limit=MAX_LINE_BYTES
                    )
                else:
                    self._reader, self._writer = await asyncio.open_connection(
                        self.ip, self.port, limit=MAX_LINE_BYTES
                    )
        except (TimeoutError, ProxyTimeoutError):
            raise SmtpFailure("unreachable", "connect", "timeout") from None
        except ProxyError as exc:
            kind = "unreachable" if exc.error_code in _SOCKS_UNREACHABLE else "refused"
            raise SmtpFailure(kind, "connect", f"socks: {exc}") from None
        except ProxyConnectionError:
            raise SmtpFailure("proxy", "connect", "could not reach the SOCKS proxy") from None
        except ConnectionRefusedError:
            raise SmtpFailure("refused", "connect") from None
        except OSError as exc:
            kind = "unreachable" if exc.errno in _UNREACHABLE_ERRNOS else "refused"
            raise SmtpFailure(kind, "connect", exc.strerror or type(exc).__name__) from None

    async def command(
        self, line: str, timeout: float | None = None, label: str | None = None
    ) -> Reply:
        assert self._writer is not None
        stage = label or line.split(" ", 1)[0]
        if any(char in line for char in "\r\n\0"):
            # Settings are checked and addresses parsed before; a line break here would smuggle a
            # second command onto the wire, so nothing is sent.
            raise SmtpFailure("protocol", stage, "refused to send a command with a line break")
        if self._unread():
            # A reply nobody asked for (a server out of step): it would be read as this
            # command's, and every later reply paired with the command before it.
            self.broken = True
            raise SmtpFailure("protocol", stage, "a reply arrived before the command")
        try:
            self._writer.write(line.encode("utf-8") + b"\r\n")
            await self._writer.drain()
        except (OSError, RuntimeError):
            self.broken = True
            raise SmtpFailure("closed", stage) from None
        return await self._read(stage, timeout or self.timeouts.command)

    @property
    def pipelining(self) -> bool:
        """The server offers PIPELINING (RFC 2920): commands may be sent without waiting."""
        return "PIPELINING" in self.extensions

    async def pipeline(self, lines: list[str], label: str | list[str]) -> list[Reply]:
        """Send `lines` in one write and read one reply for each, in order (RFC 2920); `label`
        names the replies in the transcript, one for all or one per line.

        A server that answers fewer lines makes a read time out; one that answers more leaves bytes
        behind the last reply: both raise `SmtpFailure` (protocol or timeout) and leave the session
        broken, since no reply can then be paired with its command with certainty.
        """
        assert self._writer is not None
        labels = [label] * len(lines) if isinstance(label, str) else label
        if any(char in line for line in lines for char in "\r\n\0"):
            raise SmtpFailure("protocol", labels[0], "refused to send a command with a line break")
        if self._unread():
            self.broken = True
            raise SmtpFailure("protocol", labels[0], "a reply arrived before the command")
        try:
            self._writer.write(b"".join(line.encode("utf-8") + b"\r\n" for line in lines))
            await self._writer.drain()
        except (OSError, RuntimeError):
            self.broken = True
            raise SmtpFailure("closed", labels[0]) from None
        replies = [await self._read(stage, self.timeouts.command) for stage in labels]
        await asyncio.sleep(0)  # let bytes that arrived with the last reply reach the buffer
        if self._unread():
            self.broken = True
            raise SmtpFailure("protocol", labels[-1], "more replies than commands")
        return replies

    def _unread(self) -> bool:
        """Bytes received and not read yet (asyncio keeps them in the reader's `_buffer`)."""
        return bool(getattr(self._reader, "_buffer", b""))

    async def _read(self, stage: str, timeout: float) -> Reply:
        assert self._reader is not None
        lines: list[str] = []
        code = 0
        size = 0
        try:
            async with asyncio.timeout(timeout):
                while True:
                    raw = await self._reader.readline()
                    if not raw:
                        raise SmtpFailure("closed", stage, "connection closed by the server")
                    size += len(raw)
                    if len(lines) >= MAX_REPLY_LINES or size > MAX_REPLY_BYTES:
                        raise SmtpFailure("protocol", stage, "reply too long")
                    text = raw.decode("utf-8", "replace").rstrip("\r\n")
                    line_code = reply_code(text)
                    if line_code is None or (lines and line_code != code):
                        raise SmtpFailure("protocol", stage, "malformed reply")
                    code = line_code
                    lines.append(text[4:])
                    if text[3:4] != "-":
                        break
        except TimeoutError:
            self.broken = True
            raise SmtpFailure("timeout", stage) from None
        except asyncio.CancelledError:  # the verification's deadline: mid-reply, no polite QUIT
            self.broken = True
            raise
        except SmtpFailure:
            self.broken = True
            raise
        except (ValueError, asyncio.LimitOverrunError):  # a line beyond MAX_LINE_BYTES
            self.broken = True
            raise SmtpFailure("protocol", stage, "reply line too long") from None
        except (OSError, asyncio.IncompleteReadError) as exc:
            self.broken = True
            raise SmtpFailure("closed", stage, type(exc).__name__) from None
        reply = Reply(code, tuple(lines))
        self.transcript.append(SmtpReply(self.host, stage, code, reply.enhanced, lines[0][:200]))
        return reply

    async def hello(self, name: str) -> Reply:
        """EHLO, falling back to HELO for servers that do not speak ESMTP."""
        reply = await self.command(f"EHLO {name}")
        if reply.code == 250:
            self.extensions = {line.split(" ", 1)[0].upper() for line in reply.lines[1:]}
            return reply
        if reply.code in (421,):
            return reply
        return await self.command(f"HELO {name}")

    async def starttls(self, server_hostname: str) -> bool:
        """Upgrade if offered; False (still plaintext, still usable) if the server declines."""
        if "STARTTLS" not in self.extensions:
            return False
        reply = await self.command("STARTTLS")
        if reply.code != 220:
            return False
        assert self._writer is not None
        try:
            async with asyncio.timeout(self.timeouts.command):
                await self._writer.start_tls(_insecure_context(), server_hostname=server_hostname)
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            raise SmtpFailure("tls", "STARTTLS", type(exc).__name__) from None
        self.tls = True
        return True

    async def quit(self) -> None:
        """QUIT, then wait (briefly) until the server has hung up so its connection count drops.

        Releasing a mail host's slot while the server still counts the connection would let the next
        session exceed the host's connection limit from its point of view. Over TLS the server
        completes its shutdown only after our close_notify, so we close, then give it a moment.
        A cancellation (the run ending while sessions say goodbye) waits for the hang-up too,
        within QUIT's own timeouts, then goes on: the caller gives the slot back only after it.
        """
        if self._writer is None:
            return
        if self.broken:
            self.close()
            return
        goodbye = asyncio.ensure_future(self._quit())
        try:
            await asyncio.shield(goodbye)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await goodbye
            raise

    async def _quit(self) -> None:
        writer, self._writer = self._writer, None
        assert writer is not None
        try:
            writer.write(b"QUIT\r\n")
            async with asyncio.timeout(min(self.timeouts.command, 2.0)):
                await writer.drain()
                if self._reader is not None:
                    while await self._reader.read(4096):
                        pass
        except (TimeoutError, OSError, RuntimeError, ValueError, ssl.SSLError):
            pass
        writer.close()
        try:
            async with asyncio.timeout(1.0):
                await writer.wait_closed()
                if self.tls:
                    await asyncio.sleep(TLS_CLOSE_GRACE)
        except (TimeoutError, OSError, ssl.SSLError, RuntimeError):
            pass

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
