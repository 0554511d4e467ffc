"""HTTP servers that misbehave on purpose, for the plugins' deadline, size and secrecy tests.

A `HostileHTTP` answers every request (any method, any path) with what its `reply` says: a body
trickled one byte at a time, headers trickled the same way, a chunked body that never ends, a huge
`Content-Length`, a fixed rejection (413, a 400 that names nothing), or a 400 that quotes the
request back (its `Authorization` header and query string: the way a careless API leaks secrets).
It speaks raw HTTP/1.1 over asyncio streams, so nothing in it is polite by accident, and closes the
connection after each answer.

It listens on loopback only (`loopback.bind_socket`), in its own thread and event loop, and stops
with the test that started it (a context manager, or `stop()`). `requests` counts requests; `seen`
keeps the last few (method, target, headers).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from .loopback import bind_socket

MAX_HEAD = 64 * 1024  # bytes of request line and headers read
MAX_BODY = 8 * 1024 * 1024  # bytes of request body kept (the rest is read and dropped)
ENDLESS_CHUNK = 64 * 1024
FILLER = b"x"


@dataclass(frozen=True)
class Request:
    """What the client sent (the body is cut at `MAX_BODY`)."""

    method: str
    target: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Reply:
    """One answer. `trickle` > 0 sends the body one byte per `trickle` seconds (the head too with
    `trickle_head`, and then forever); `endless` sends chunks of `body` (or filler) for ever;
    `length` announces a `Content-Length` and sends that many bytes of filler after `body`."""

    status: int = 200
    reason: str = ""  # "" is the standard phrase
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    trickle: float = 0.0
    trickle_head: bool = False
    endless: bool = False
    length: int | None = None


# ------------------------------------------------------------------------------------ replies
TRICKLED = b'{"padding": "' + b"." * 26 + b'"}'  # 41 bytes: about 41 s at one byte a second


def trickle(body: bytes = TRICKLED, every: float = 1.0) -> Reply:
    """A 200 whose body arrives one byte per `every` seconds (each read returns in time)."""
    return Reply(body=body, trickle=every, headers={"Content-Type": "application/json"})


def trickle_head(every: float = 1.0) -> Reply:
    """A status line and then headers one byte per `every` seconds, never finishing."""
    return Reply(trickle=every, trickle_head=True)


def endless() -> Reply:
    """A 200 with a chunked body that never ends, as fast as the client reads."""
    return Reply(endless=True, headers={"Content-Type": "application/json"})


def huge(size: int = 10 * 1024**3) -> Reply:
    """A 200 announcing `size` bytes (10 GiB by default) and sending them as fast as read."""
    return Reply(body=b'{"padding": "', length=size, headers={"Content-Type": "application/json"})


def rejection(status: int, body: Any = None) -> Reply:
    """The same refusal to every request: `rejection(413)`, `rejection(400, {"errors": [...]})`."""
    data = b"" if body is None else json.dumps(body).encode()
    return Reply(status=status, body=data, headers={"Content-Type": "application/json"})


def echo(request: Request, status: int = 400, pad: int = 0, *, in_reason: bool = False) -> Reply:
    """A refusal that quotes the request: its line, every header (Authorization included) and
    the start of its body, in both API error envelopes; `pad` bytes of filler make it large.
    `in_reason` quotes the request's target and Authorization header in the status line's phrase
    as well."""
    said = (
        f"bad request {request.method} {request.target} "
        + " ".join(f"{k}: {v}" for k, v in request.headers.items())
        + " body: "
        + request.body[:200].decode("utf-8", "replace")
    )
    if pad:
        said += " " + "z" * pad
    body = {"meta": {"errors": [said]}, "errors": [said], "error": said}
    reply = rejection(status, body)
    if in_reason:
        quoted = next((v for k, v in request.headers.items() if k.lower() == "authorization"), "")
        phrase = f"Refused {request.target} Authorization: {quoted}"
        reply = Reply(reply.status, phrase, reply.headers, reply.body)
    return reply


def echoing(
    status: int = 400, pad: int = 0, *, in_reason: bool = False
) -> Callable[[Request], Reply]:
    """A reply function for `HostileHTTP` that echoes every request (see `echo`)."""
    return lambda request: echo(request, status, pad, in_reason=in_reason)


# ------------------------------------------------------------------------------------ server
class HostileHTTP:
    """One misbehaving server on loopback; `reply` is a `Reply` or a function of the `Request`."""

    def __init__(
        self, reply: Reply | Callable[[Request], Reply], *, host: str = "127.0.0.1"
    ) -> None:
        self.reply = reply
        self.requests = 0
        self.seen: deque[Request] = deque(maxlen=20)
        self.bytes_sent = 0
        self._sock = bind_socket(host)
        self.url = f"http://{host}:{self._sock.getsockname()[1]}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> HostileHTTP:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> HostileHTTP:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            server = loop.run_until_complete(
                asyncio.start_server(self._serve, sock=self._sock, limit=MAX_HEAD)
            )
            ready.set()
            loop.run_forever()
            server.close()
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            with contextlib.suppress(Exception):
                loop.run_until_complete(server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=run, name="hostile-http", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop = None
        self._sock.close()

    # ---------------------------------------------------------------------------- one connection
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await _read_request(reader)
            if request is None:
                return
            with self._lock:
                self.requests += 1
                self.seen.append(request)
            reply = self.reply(request) if callable(self.reply) else self.reply
            await self._answer(writer, reply)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass  # the server stops: the answer ends here, quietly
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        await writer.drain()
        self.bytes_sent += len(data)

    async def _answer(self, writer: asyncio.StreamWriter, reply: Reply) -> None:
        phrase = reply.reason or _phrase(reply.status)
        head = [f"HTTP/1.1 {reply.status} {phrase}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in reply.headers.items()]
        if reply.endless:
            head.append("Transfer-Encoding: chunked")
        elif reply.length is not None:
            head.append(f"Content-Length: {reply.length}")
        else:
            head.append(f"Content-Length: {len(reply.body)}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if reply.trickle_head:
            await self._send(writer, data.split(b"\r\n", 1)[0] + b"\r\n")
            while not writer.is_closing():  # a header that never ends
                await asyncio.sleep(reply.trickle)
                await self._send(writer, b"X")
            return
        await self._send(writer, data)
        if reply.endless:
            chunk = reply.body or FILLER * ENDLESS_CHUNK
            framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
            while not writer.is_closing():
                await self._send(writer, framed)
            return
        if reply.trickle > 0:
            for index in range(len(reply.body)):
                if index:
                    await asyncio.sleep(reply.trickle)
                await self._send(writer, reply.body[index : index + 1])
            return
        await self._send(writer, reply.body)
        if reply.length is not None:
            left = reply.length - len(reply.body)
            block = FILLER * ENDLESS_CHUNK
            while left > 0:
                await self._send(writer, block[: min(left, len(block))])
                left -= len(block)


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, _, rest = lines[0].partition(" ")
    target = rest.rpartition(" ")[0] or rest
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip()] = value.strip()
    size = int(next((v for k, v in headers.items() if k.lower() == "content-length"), "0") or 0)
    body = b""
    while size > 0:
        part = await reader.read(min(size, 256 * 1024))
        if not part:
            break
        size -= len(part)
        if len(body) < MAX_BODY:
            body += part[: MAX_BODY - len(body)]
    return Request(method, target, headers, body)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


__all__ = [
    "HostileHTTP",
    "Reply",
    "Request",
    "echo",
    "echoing",
    "endless",
    "huge",
    "rejection",
    "trickle",
    "trickle_head",
]
