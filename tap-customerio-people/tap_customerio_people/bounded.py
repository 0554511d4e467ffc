"""Every App API answer the tap reads is bounded: in time by a deadline, in size by a cap.

requests' timeout applies to each socket operation: a server that sends one byte a second never
trips it, and a body that never ends is read until memory runs out (issue 16). `BoundedAdapter`,
mounted on every stream's session, makes the timeout the request is sent with its whole deadline:
connecting, sending, the answer's headers and its body. At the deadline a watchdog shuts the
connection's socket down (the blocked read returns at once) and the request fails with
`DeadlineExceeded`, a `requests` timeout, retried like one. The adapter reads the body itself, up
to `MAX_ANSWER_BYTES`, and fails with `AnswerTooLarge` past that (retried like a broken answer).

Why 64 MB: the largest legitimate answer is a hydration page, `POST /v1/customers/attributes` for
100 People, each with at most 300 attributes of at most 150-byte names and 1000-byte values (the
Track API's limits): about 35 MB. A search page (1000 identifiers) is under 1 MB. 64 MB leaves
that worst case nearly double room, and bounds what a hostile answer can take per request.

A TLS handshake is bounded per operation (by the same timeout), not by the deadline.
"""

from __future__ import annotations

import contextlib
import contextvars
import socket
import threading
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from typing_extensions import override
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

MAX_ANSWER_BYTES = 64 * 1024 * 1024
READ_CHUNK = 64 * 1024


class DeadlineExceeded(requests.exceptions.ReadTimeout):
    """The whole request took longer than its timeout (a trickled answer)."""

    def __init__(self, seconds: float, *, request: Any = None) -> None:
        super().__init__(f"no complete answer within {seconds:g} s", request=request)


class AnswerTooLarge(requests.exceptions.RequestException):
    """The answer's body went past `MAX_ANSWER_BYTES`."""

    def __init__(self, cap: int, *, request: Any = None) -> None:
        super().__init__(f"an answer larger than {cap // (1024 * 1024)} MB", request=request)


# The deadline of the request this thread is sending, seen by the connection it goes through.
_current: contextvars.ContextVar[_Guard | None] = contextvars.ContextVar(
    "tap_customerio_people_deadline", default=None
)


def _shut(sock: socket.socket) -> None:
    """Shut the connection down under a reader blocked in another thread (its read returns)."""
    with contextlib.suppress(OSError):
        # The plain socket's shutdown, also for an SSLSocket: its own would unwrap it first.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Guard:
    """One request's deadline: when it passes, the socket of its connection is shut down."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sock = sock
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            if self._sock is not None:
                _shut(self._sock)

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._sock = None


def _watch(sock: socket.socket | None) -> None:
    guard = _current.get()
    if guard is not None:
        guard.watch(sock)


class _WatchedHTTPConnection(HTTPConnection):
    @override
    def connect(self) -> None:
        super().connect()
        _watch(self.sock)

    @override
    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self.sock)  # a kept-alive connection
        super().request(*args, **kwargs)

    @override
    def getresponse(self) -> Any:
        _watch(self.sock)
        return super().getresponse()


class _WatchedHTTPSConnection(HTTPSConnection):
    @override
    def connect(self) -> None:
        super().connect()
        _watch(self.sock)

    @override
    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self.sock)
        super().request(*args, **kwargs)

    @override
    def getresponse(self) -> Any:
        _watch(self.sock)
        return super().getresponse()


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


POOL_CLASSES = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


def _seconds(timeout: Any) -> float | None:
    """The deadline in a requests timeout: a number (the tap's), else none."""
    if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0:
        return float(timeout)
    return None


class BoundedAdapter(HTTPAdapter):
    """An `HTTPAdapter` whose requests end by their timeout and read at most `max_answer` bytes."""

    def __init__(self, *args: Any, max_answer: int = MAX_ANSWER_BYTES, **kwargs: Any) -> None:
        self.max_answer = max_answer
        super().__init__(*args, **kwargs)

    @override
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = POOL_CLASSES

    @override
    def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(*args, **kwargs)
        manager.pool_classes_by_scheme = POOL_CLASSES
        return manager

    @override
    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        seconds = _seconds(timeout)
        guard = _Guard(seconds) if seconds is not None else None
        token = _current.set(guard)
        try:
            response = super().send(
                request, stream=True, timeout=timeout, verify=verify, cert=cert, proxies=proxies
            )
            if not stream:
                self._read(response, guard)
            if guard is not None and guard.expired:
                # Shut down mid-answer, the answer may look whole (headers ended by the cut).
                response.close()
                raise DeadlineExceeded(guard.seconds, request=request)
            return response
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
            if guard is not None and guard.expired:
                raise DeadlineExceeded(guard.seconds, request=request) from None
            raise
        finally:
            _current.reset(token)
            if guard is not None:
                guard.close()

    def _read(self, response: requests.Response, guard: _Guard | None) -> None:
        """The whole body into `response.content`, or `AnswerTooLarge` past `max_answer`."""
        body = bytearray()
        try:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > self.max_answer:
                raise AnswerTooLarge(self.max_answer, request=response.request)
            for chunk in response.iter_content(READ_CHUNK):
                body += chunk
                if len(body) > self.max_answer:
                    raise AnswerTooLarge(self.max_answer, request=response.request)
                if guard is not None and guard.expired:
                    raise DeadlineExceeded(guard.seconds, request=response.request)
        except BaseException:
            response.close()
            raise
        # What `Response.content` reads once the body has been read (requests keeps it there).
        response._content = bytes(body)
        response._content_consumed = True


__all__ = ["MAX_ANSWER_BYTES", "AnswerTooLarge", "BoundedAdapter", "DeadlineExceeded"]
