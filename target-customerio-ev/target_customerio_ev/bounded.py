"""Every HTTP answer the target reads is bounded: in time by a deadline, in size by a cap.

httpx's timeouts apply to each network operation: a server that sends one byte a second never trips
a 3 s read timeout, and a chunked body that never ends is read for ever (issue 16: 42.8 s with
`request_timeout: 3`, 4.17 GB of memory). So:

- `deadline(seconds)` sets, for the requests made inside it (this thread, or this task), one
  wall-clock deadline covering connect, sending, the answer's headers and its body. `transport()`
  makes the HTTP transport whose network operations each wait at most what is left of it; past it,
  the next operation raises `httpx.ReadTimeout` (a timeout like any other: the callers retry it).
- `read_capped(response, cap)` reads a streamed answer's body up to `cap` bytes and raises
  `AnswerTooLarge` past it, having read at most one network read more.

The transport is httpx's own, with its connection pool's network backend wrapped
(`_DeadlineBackend`); `transport()` fails at once if a later httpx stops offering that seam.

httpx logs each answer's status line at INFO, the server's reason phrase included: `redact_logs`
installs one filter on its loggers that redacts the run's secrets (`errors.redact`) and caps the
line, since a server may quote the Authorization header back there.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
import typing
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import httpx

from .errors import redact

WRITE_PIECE = 64 * 1024  # bytes sent per deadline check
# Answers are asked for uncompressed (a small gzip body can inflate a thousandfold).
IDENTITY = {"Accept-Encoding": "identity"}

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "target_customerio_ev_deadline", default=None
)


class AnswerTooLarge(httpx.TransportError):
    """An answer's body went past the cap: treated like a broken answer (retried, then failed)."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"an answer larger than {describe(cap)}")
        self.cap = cap


def describe(size: int) -> str:
    """`64 KB`, `1 MB`: a cap in words."""
    if size >= 1024 * 1024 and size % (1024 * 1024) == 0:
        return f"{size // (1024 * 1024)} MB"
    return f"{size // 1024} KB"


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Requests made inside share one deadline, `seconds` from now (connect to the body's end)."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def _left(timeout: float | None) -> float | None:
    """`timeout`, shortened to what is left of the deadline; a timeout when nothing is left."""
    at = _deadline.get()
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("the request's deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        view = memoryview(buffer)
        for start in range(0, len(view), WRITE_PIECE):
            self._stream.write(bytes(view[start : start + WRITE_PIECE]), _left(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, _left(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_tcp(
            host, port, _left(timeout), local_address, socket_options
        )
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._backend.connect_unix_socket(path, _left(timeout), socket_options)
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def transport(**options: Any) -> httpx.HTTPTransport:
    """httpx's transport (`options` as `httpx.HTTPTransport` takes them) honouring `deadline`."""
    made = httpx.HTTPTransport(**options)
    pool = made._pool  # the one seam httpx leaves for a network backend
    backend = pool._network_backend
    if not isinstance(backend, httpcore.NetworkBackend):  # pragma: no cover  # a changed httpx
        raise RuntimeError("httpx's transport no longer has a network backend to bound")
    pool._network_backend = _DeadlineBackend(backend)
    return made


def read_capped(response: httpx.Response, cap: int) -> bytes:
    """The body of a streamed `response`, at most `cap` bytes; `AnswerTooLarge` past that."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > cap:
        raise AnswerTooLarge(cap)
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > cap:
            raise AnswerTooLarge(cap)
    return bytes(body)


MAX_LOG_LINE = 1000  # characters of one httpx log line
# Where httpx and httpcore log (a filter on a logger does not see its children's records).
HTTP_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


class _RedactedLog(logging.Filter):
    """Redacts the secrets of every target of the process from httpx's log lines, and caps them."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def add(self, secrets: Iterable[str]) -> None:
        with self._lock:
            self.secrets = self.secrets | {s for s in secrets if s}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message, self.secrets)[:MAX_LOG_LINE]
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


_REDACTED_LOG = _RedactedLog()


def redact_logs(secrets: Iterable[str]) -> None:
    """Keep `secrets` (and any Authorization value) out of httpx's and httpcore's log lines."""
    _REDACTED_LOG.add(secrets)
    for name in HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if _REDACTED_LOG not in logger.filters:
            logger.addFilter(_REDACTED_LOG)


__all__ = [
    "IDENTITY",
    "AnswerTooLarge",
    "deadline",
    "describe",
    "read_capped",
    "redact_logs",
    "transport",
]
