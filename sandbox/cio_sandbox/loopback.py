"""Loopback-only networking: addresses on 127.0.0.0/8 and the pre-bound sockets every server uses.

The sandbox never listens anywhere but loopback; every socket a server serves on is bound here, so
that rule holds in one place. A leaf module: it imports nothing from ``cio_sandbox``.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
from collections.abc import Iterable, Iterator, Sequence

# How often a server that asked for any free port (port 0) tries again when the port the first
# socket got is taken on another of its addresses or protocols.
BIND_ATTEMPTS = 20
# Mail hosts get 127.0.1.1 .. 127.0.1.250, then 127.0.2.1 .., so no address ends in 0 or 255.
HOSTS_PER_BLOCK = 250


def ensure_loopback(host: str) -> str:
    """The sandbox never listens anywhere but 127.0.0.0/8 (or ::1)."""
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"the sandbox only listens on loopback addresses, not {host}")
    return host


def host_address(n: int) -> str:
    """The ``n``-th (from 0) loopback address handed to a mail host: 127.0.1.1, 127.0.1.2, ..."""
    return f"127.0.{1 + n // HOSTS_PER_BLOCK}.{1 + n % HOSTS_PER_BLOCK}"


def address_key(ip: str) -> tuple[int, ...]:
    """A sort key that orders dotted IPv4 addresses numerically (127.0.1.9 before 127.0.1.10)."""
    return tuple(int(part) for part in ip.split("."))


def bind_socket(host: str, port: int = 0, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket bound to ``host:port`` (a loopback address), ready to hand to asyncio."""
    # IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted connections (it skips sockets made
    # with proto 0).
    sock = socket.socket(
        socket.AF_INET, kind, socket.IPPROTO_TCP if kind == socket.SOCK_STREAM else 0
    )
    if kind == socket.SOCK_STREAM:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((ensure_loopback(host), port))
    return sock


def bind_on_one_port(
    endpoints: Sequence[tuple[str, int]], port: int, *, busy: str
) -> list[socket.socket]:
    """One socket per ``(host, socket kind)`` in ``endpoints``, all on one port.

    The first socket takes ``port``; the others take the port it got. With port 0, a port that
    turns out to be taken for a later endpoint is given back and another one tried, up to
    ``BIND_ATTEMPTS`` times; then ``OSError(EADDRINUSE, busy)``.
    """
    for _ in range(BIND_ATTEMPTS):
        socks: list[socket.socket] = []
        try:
            first_host, first_kind = endpoints[0]
            socks.append(bind_socket(first_host, port, first_kind))
            chosen = socks[0].getsockname()[1]
            socks.extend(bind_socket(host, chosen, kind) for host, kind in endpoints[1:])
            return socks
        except OSError as exc:
            for sock in socks:
                sock.close()
            if port or exc.errno != errno.EADDRINUSE:
                raise
    raise OSError(errno.EADDRINUSE, busy)


@contextlib.contextmanager
def blackholes(ips: Iterable[str]) -> Iterator[int]:
    """Listeners on `ips` (one port, returned) that never accept: connects hang as if SYNs were
    dropped, the way a firewall that filters outbound port 25 looks from the verifier."""
    sockets: list[socket.socket] = []
    try:
        port = 0
        for ip in ips:
            listener = socket.socket()
            listener.bind((ip, port))
            port = listener.getsockname()[1]
            listener.listen(0)
            filler = socket.create_connection((ip, port), timeout=1)  # fills the accept queue
            sockets += [listener, filler]
        yield port
    finally:
        for sock in sockets:
            sock.close()
