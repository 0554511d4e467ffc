"""A small asyncio SMTP client: just enough protocol to ask a mail server about recipients.

Async streams (no thread per connection), multi-line replies, enhanced status codes, EHLO with HELO
fallback, opportunistic STARTTLS, optional SOCKS5. Every reply is kept for the evidence trail.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ssl
from dataclasses import dataclass, field

from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError
from python_socks.async_.asyncio import Proxy

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


class SmtpFailure(Exception):
    """The conversation broke (no usable reply).

    `kind` is timeout, refused, unreachable, proxy, closed or tls.
    """

    def __init__(self, kind: str, stage: str, detail: str = "") -> None:
        super().__init__(f"{stage}: {kind}{' (' + detail + ')' if detail else ''}")
        self.kind, self.stage, self.detail = kind, stage, detail


@dataclass(frozen=True)
class Timeouts:
    connect: float
    banner: float
    command: float


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
    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None

    async def connect(self) -> Reply:
        """Open the connection and read the banner."""
        try:
            async with asyncio.timeout(self.timeouts.connect):
                if self.proxy_url:
                    sock = await Proxy.from_url(self.proxy_url).connect(self.ip, self.port)
                    self._reader, self._writer = await asyncio.open_connection(
                        sock=sock, limit=2**16
                    )
                else:
                    self._reader, self._writer = await asyncio.open_connection(
                        self.ip, self.port, limit=2**16
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
        return await self._read("banner", self.timeouts.banner)

    async def command(
        self, line: str, timeout: float | None = None, label: str | None = None
    ) -> Reply:
        assert self._writer is not None
        stage = label or line.split(" ", 1)[0]
        try:
            self._writer.write(line.encode("utf-8") + b"\r\n")
            await self._writer.drain()
        except (OSError, RuntimeError):
            self.broken = True
            raise SmtpFailure("closed", stage) from None
        return await self._read(stage, timeout or self.timeouts.command)

    async def _read(self, stage: str, timeout: float) -> Reply:
        assert self._reader is not None
        lines: list[str] = []
        code = 0
        try:
            async with asyncio.timeout(timeout):
                while True:
                    raw = await self._reader.readline()
                    if not raw:
                        raise SmtpFailure("closed", stage, "connection closed by the server")
                    text = raw.decode("utf-8", "replace").rstrip("\r\n")
                    if len(text) < 3 or not text[:3].isdigit():
                        raise SmtpFailure("closed", stage, "malformed reply")
                    code = int(text[:3])
                    lines.append(text[4:])
                    if text[3:4] != "-":
                        break
        except TimeoutError:
            self.broken = True
            raise SmtpFailure("timeout", stage) from None
        except SmtpFailure:
            self.broken = True
            raise
        except (OSError, ValueError, asyncio.LimitOverrunError, asyncio.IncompleteReadError) as exc:
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
        """
        if self._writer is None:
            return
        if self.broken:
            self.close()
            return
        writer, self._writer = self._writer, None
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
