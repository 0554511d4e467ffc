"""The hostile HTTP server the plugins' issue-16 tests use (`cio_sandbox.hostile_http`) does what
they rely on: it listens on loopback only, answers as each reply says, and stops."""

from __future__ import annotations

import json
import socket
import time

import pytest
from cio_sandbox import hostile_http as hostile


def exchange(url: str, request: bytes, *, read_for: float = 1.0, limit: int = 1 << 20) -> bytes:
    """Send `request` raw and read what comes back for `read_for` seconds (or `limit` bytes)."""
    host, port = url.removeprefix("http://").split(":")
    got = b""
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        sock.settimeout(0.2)
        until = time.monotonic() + read_for
        while time.monotonic() < until and len(got) < limit:
            try:
                part = sock.recv(65536)
            except TimeoutError:
                continue
            if not part:
                break
            got += part
    return got


GET = b"GET /api/v1/validate?key=S3CRET HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer S3CRET\r\n\r\n"


def test_it_listens_on_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback"):
        hostile.HostileHTTP(hostile.rejection(413), host="0.0.0.0")
    with hostile.HostileHTTP(hostile.rejection(413)) as server:
        assert server.url.startswith("http://127.0.0.1:")


def test_a_rejection_and_an_echo() -> None:
    with hostile.HostileHTTP(hostile.rejection(413)) as server:
        answer = exchange(server.url, GET)
        assert answer.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n")
        assert server.requests == 1
    with hostile.HostileHTTP(hostile.echoing(599, pad=100, in_reason=True)) as server:
        head, _, body = exchange(server.url, GET).partition(b"\r\n\r\n")
        assert head.startswith(
            b"HTTP/1.1 599 Refused /api/v1/validate?key=S3CRET Authorization: Bearer S3CRET\r\n"
        )
        said = json.loads(body)["meta"]["errors"][0]
        assert "key=S3CRET" in said and "Authorization: Bearer S3CRET" in said
        assert said.endswith("z" * 100)
        assert server.seen[0].headers["Authorization"] == "Bearer S3CRET"


def test_a_trickle_sends_one_byte_at_a_time() -> None:
    with hostile.HostileHTTP(hostile.trickle(b"0123456789", every=0.2)) as server:
        answer = exchange(server.url, GET, read_for=1.0)
    body = answer.partition(b"\r\n\r\n")[2]
    assert b"Content-Length: 10" in answer and 3 <= len(body) <= 7  # about five in one second
    with hostile.HostileHTTP(hostile.trickle_head(every=0.1)) as server:
        answer = exchange(server.url, GET, read_for=1.0)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\nX") and b"\r\n\r\n" not in answer


def test_an_endless_and_a_huge_answer() -> None:
    with hostile.HostileHTTP(hostile.endless()) as server:
        answer = exchange(server.url, GET, read_for=3, limit=4 << 20)
    assert b"Transfer-Encoding: chunked" in answer and len(answer) >= 4 << 20
    with hostile.HostileHTTP(hostile.huge(10 << 30)) as server:
        answer = exchange(server.url, GET, read_for=3, limit=4 << 20)
        assert b"Content-Length: 10737418240" in answer and len(answer) >= 4 << 20
    # Stopped: nothing listens any more.
    with pytest.raises(OSError):
        exchange(server.url, GET)
