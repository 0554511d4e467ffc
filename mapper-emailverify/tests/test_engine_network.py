"""Network conditions: blocked SMTP egress (found once, no waiting) and the SOCKS5 proxy.

Blocked egress is reproduced on loopback with listeners whose accept queue is full: the kernel drops
the SYNs, so a connect times out exactly as it does behind a port-25 firewall. The SOCKS5 proxy is a
small real proxy started by the test.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from typing import Any

import pytest
from cio_sandbox import Sandbox
from cio_sandbox.loopback import blackholes
from mapper_emailverify import Verifier


def normal_people(sb: Sandbox, domains: int, per_domain: int) -> list[str]:
    by_domain: dict[str, list[str]] = {}
    for person in sb.world.iter_people():
        if person.truth.case == "normal" and person.email and person.email == person.email.strip():
            by_domain.setdefault(person.email.rsplit("@", 1)[1].lower(), []).append(person.email)
    chosen = [d for d, emails in by_domain.items() if len(emails) >= per_domain][:domains]
    return [email for d in chosen for email in by_domain[d][:per_domain]]


def mx_ip(sb: Sandbox, address: str) -> str:
    domain = sb.world.domains[address.rsplit("@", 1)[1].lower()]
    return next(h.ip for h in sb.world.smtp_hosts.values() if h.hostname == domain.mx[0][1])


def verify(
    settings: dict[str, Any], addresses: list[str]
) -> tuple[list[tuple[str, str]], float, Verifier]:
    async def go() -> tuple[list[tuple[str, str]], float, Verifier]:
        started = time.monotonic()
        async with Verifier(settings) as verifier:
            results = await verifier.verify_many(addresses)
        return (
            [(str(r.status), str(r.substatus)) for r in results],
            time.monotonic() - started,
            verifier,
        )

    return asyncio.run(go())


def test_port25_blocked_is_found_once_and_answered_without_waiting(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    addresses = normal_people(sandbox, domains=6, per_domain=4)
    with blackholes(sorted({mx_ip(sandbox, a) for a in addresses})) as port:
        caplog.set_level(logging.WARNING, logger="mapper_emailverify")
        settings = sandbox.mapper_config(smtp_port=port, smtp_connect_timeout=0.5, smtp_timeout=2)
        verdicts, elapsed, verifier = verify(settings, addresses)
    assert set(verdicts) == {("Unknown", "smtp_unavailable")}
    assert verifier.smtp_unavailable
    assert elapsed < 3  # about one connect timeout, not one per address (24 x 0.5 s)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "socks_proxy" in message and "backend: emailverify" in message
    assert not any("@" in r.getMessage() for r in caplog.records)  # no address in the logs


def test_connection_refused_is_failover_not_blocked_egress(sandbox: Sandbox) -> None:
    """A refused connect (RST) proves the network works: the dead first MX fails over."""
    addresses = [sandbox.world.address_for("dead_first_mx"), *normal_people(sandbox, 4, 1)]
    verdicts, _, verifier = verify(sandbox.mapper_config(smtp_timeout=2), addresses)
    assert verdicts == [("Valid", "mailbox_exists")] * len(addresses)
    assert not verifier.smtp_unavailable


class Socks5Proxy:
    """A minimal SOCKS5 CONNECT proxy on loopback; `refuse_with` fails every CONNECT that way."""

    def __init__(self, refuse_with: int | None = None) -> None:
        self.refuse_with = refuse_with
        self.connects: list[tuple[str, int]] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return f"socks5://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            _version, count = await reader.readexactly(2)
            await reader.readexactly(count)
            writer.write(b"\x05\x00")  # no authentication
            _v, _cmd, _rsv, kind = await reader.readexactly(4)
            if kind == 1:
                host = socket.inet_ntoa(await reader.readexactly(4))
            else:
                host = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
            (port,) = struct.unpack("!H", await reader.readexactly(2))
            self.connects.append((host, port))
            reply = (
                b"\x05%c\x00\x01" % (self.refuse_with or 0)
                + socket.inet_aton("127.0.0.1")
                + b"\x00\x00"
            )
            if self.refuse_with is not None:
                writer.write(reply)
                await writer.drain()
                return
            up_reader, up_writer = await asyncio.open_connection(host, port)
            writer.write(reply)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()


def verify_via_proxy(
    sb: Sandbox, proxy: Socks5Proxy, addresses: list[str]
) -> list[tuple[str, str]]:
    async def go() -> list[tuple[str, str]]:
        url = await proxy.start()
        try:
            async with Verifier(sb.mapper_config(socks_proxy=url, smtp_timeout=2)) as verifier:
                results = await verifier.verify_many(addresses)
        finally:
            await proxy.stop()
        return [(str(r.status), str(r.substatus)) for r in results]

    return asyncio.run(go())


def test_socks5_proxy_carries_the_smtp_sessions(sandbox: Sandbox) -> None:
    world = sandbox.world
    addresses = [
        world.address_for("normal"),
        world.address_for("normal", "unknown"),
        world.address_for("starttls"),
        world.address_for("catch_all"),
    ]
    proxy = Socks5Proxy()
    verdicts = verify_via_proxy(sandbox, proxy, addresses)
    assert verdicts == [
        ("Valid", "mailbox_exists"),
        ("Invalid", "mailbox_not_found"),
        ("Valid", "mailbox_exists"),
        ("Catch-All", "catch_all"),
    ]
    assert proxy.connects and all(port == sandbox.smtp_port for _, port in proxy.connects)


def test_socks5_proxy_without_egress_means_smtp_unavailable(sandbox: Sandbox) -> None:
    # "Network unreachable": what a proxy behind a port-25 block says.
    proxy = Socks5Proxy(refuse_with=3)
    verdicts = verify_via_proxy(sandbox, proxy, normal_people(sandbox, 4, 2))
    assert set(verdicts) == {("Unknown", "smtp_unavailable")}
