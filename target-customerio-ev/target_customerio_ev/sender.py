"""The generic batch sender: HTTP client, requests in flight, retries, bisection, dead letters.

Why not `customerio-cdp-analytics`: it queues asynchronously and drops what fails, while a Singer
target must know that every message of a batch landed (or was dead-lettered) before STATE moves on.
`send()` returns only when each write has landed or been dead-lettered, and raises otherwise.
`submit()` runs a send in the background so the next batch can be read meanwhile; `flush()` waits
for every submitted send and raises its failure. The target flushes before each STATE it emits, so
STATE never runs ahead of the API.

Every message the API accepts is offered to the landing sample (`landing.py`); every one it rejects
is dead-lettered and counted by identifier kind (`rejections.py`): when a whole class of writes is
refused (every message so far, or every email-only one), the send stops with one line instead of
dead-lettering the run away.

Every request is bounded (`bounded.py`): `request_timeout` is the whole request's deadline (connect,
send, the answer's headers and body), and an answer's body is read up to `answer_cap` bytes. Past
either, the request failed like a dropped connection: retried, then the run stops in one line.

What differs between the APIs (path, auth, message shape, how a response names rejected items, which
setting to suggest) is left to a subclass: `pipelines.py` and `track.py`.
"""

from __future__ import annotations

import abc
import logging
import threading
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import httpx
import msgspec

from . import __version__, bounded
from .batching import batch_body, encode, pack
from .deadletter import DeadLetters
from .errors import CertificateError, ConfigError, DeliveryError
from .identify import Write, kind_name
from .landing import LandingSample
from .rejections import END_EVIDENCE, EVIDENCE, RejectionWatch, Verdict
from .retry import (
    RetryPolicy,
    is_certificate_failure,
    is_retryable_error,
    is_retryable_status,
    parse_retry_after,
)
from .settings import API_MESSAGE_LIMIT, Settings
from .stats import RunStats

ANSWER_BASE = 64 * 1024  # bytes of answer read for any request
ANSWER_PER_MESSAGE = 1024  # and more per message sent: a 207 may name every item with a reason


def answer_cap(messages: int) -> int:
    """The most bytes of answer read for a request of `messages` messages (64 KB + 1 KB each)."""
    return ANSWER_BASE + ANSWER_PER_MESSAGE * messages


class Aborted(DeliveryError):
    """The run is terminating; requests still waiting to retry give up."""


class AllRejected(DeliveryError):
    """The API refuses a whole class of writes: a setting, not a record, is wrong."""


class Sender(Protocol):
    """What the sinks and the target use: one `BatchSender`, or several (`routing.SplitSender`)."""

    def submit(self, writes: list[Write], stream: str) -> None: ...
    def flush(self) -> None: ...
    def check_rejections(self) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


@dataclass(frozen=True)
class Answer:
    """What the API answered to one request: its status and (capped) body."""

    status: int
    headers: httpx.Headers
    content: bytes


@dataclass(frozen=True)
class Item:
    write: Write
    message: dict[str, Any]


Chunk = list[tuple[Item, bytes]]


class BatchSender(abc.ABC):
    """Shared machinery: packing, requests in flight, retries, 400 isolation, dead letters."""

    path: ClassVar[str]
    api_name: ClassVar[str]
    extra_headers: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        settings: Settings,
        stats: RunStats,
        dead_letters: DeadLetters,
        logger: logging.Logger,
        *,
        transport: httpx.BaseTransport | None = None,
        landing: LandingSample | None = None,
    ) -> None:
        self.settings = settings
        self.landing = landing
        self.watch = RejectionWatch()
        self._transport = transport
        self.stats = stats
        self.dead_letters = dead_letters
        self.logger = logger
        self.policy = RetryPolicy(
            max_retries=settings.max_retries, max_seconds=settings.max_backoff_seconds
        )
        self._abort = threading.Event()
        self._client: httpx.Client | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._dispatcher: ThreadPoolExecutor | None = None
        self._submitted: list[Future[None]] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the API dialect
    @abc.abstractmethod
    def auth(self) -> tuple[str, str]:
        """HTTP Basic user and password."""

    @abc.abstractmethod
    def to_message(self, write: Write) -> dict[str, Any]:
        """One write as this API's batch item."""

    @abc.abstractmethod
    def unauthorized(self, status: int) -> str:
        """The one line for a 401 or 403: which setting to check."""

    @abc.abstractmethod
    def rejected_items(self, status: int, body: Any, size: int) -> dict[int, str] | None:
        """Per-item rejections named by the response, or None when it does not say which."""

    @abc.abstractmethod
    def rejection_hint(self, verdict: Verdict) -> str:
        """Which setting to check when the API refuses a whole class of writes."""

    @property
    def update_only(self) -> bool:
        """Whether an accepted write may leave an unknown Person alone (Track `_update`)."""
        return False

    # ------------------------------------------------------------------ lifecycle
    def _http(self) -> tuple[httpx.Client, ThreadPoolExecutor]:
        with self._lock:
            if self._client is None:
                n = self.settings.max_in_flight
                limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
                self._client = httpx.Client(
                    base_url=self.settings.base_url,
                    auth=self.auth(),
                    timeout=self.settings.request_timeout,
                    headers={
                        "Content-Type": "application/json",
                        "User-Agent": f"target-customerio-ev/{__version__}",
                        **bounded.IDENTITY,
                        **self.extra_headers,
                    },
                    transport=self._transport or bounded.transport(limits=limits),
                )
                self._pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="cio-send")
            assert self._pool is not None
            return self._client, self._pool

    def close(self) -> None:
        with self._lock:
            if self._dispatcher is not None:
                self._dispatcher.shutdown(wait=True, cancel_futures=True)
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
            if self._client is not None:
                self._client.close()
            self._client = self._pool = self._dispatcher = None

    def abort(self) -> None:
        """Stop waiting to retry (termination); requests on the wire finish or time out."""
        self._abort.set()

    # ------------------------------------------------------------------ sending
    def submit(self, writes: list[Write], stream: str) -> None:
        """Send in the background; waits first for the previous submission (one batch in flight)."""
        self.flush()
        with self._lock:
            if self._dispatcher is None:
                self._dispatcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cio-batch")
            self._submitted.append(self._dispatcher.submit(self.send, writes, stream))

    def check_rejections(self) -> None:
        """At the end of the run: a class of writes refused every time (`END_EVIDENCE` times or
        more, never accepted) fails the run, however short it was."""
        verdict = self.watch.verdict(END_EVIDENCE)
        if verdict is not None:
            raise AllRejected(self.rejection_message(verdict))

    def rejection_message(self, verdict: Verdict) -> str:
        """The one line of a run stopped because a whole class of writes is refused."""
        if verdict.too_large is not None:
            return (
                f"Customer.io {self.api_name} API refused a single {verdict.too_large}-byte "
                "message as too large (HTTP 413), far below its 32 KB per message: whatever "
                f"answers at {self.settings.base_url} (a proxy in front of Customer.io?) refuses "
                "every write; check the API origin and that proxy's body limit (lowering "
                "max_batch_bytes cannot help). The run stopped; STATE was not advanced."
            )
        if verdict.kind is None or not self.watch.accepted_total:
            what = f"all {verdict.rejected} messages sent"
            if verdict.kind is not None:
                what += f" (all {kind_name(verdict.kind)})"
            what += " and accepted none"
        else:
            what = f"all {verdict.rejected} {kind_name(verdict.kind)} writes while accepting others"
        return (
            f"Customer.io {self.api_name} API rejected {what} ({verdict.said()}): "
            f"{self.rejection_hint(verdict)} The run stopped; STATE was not advanced (the "
            "rejected messages are in the dead letters)."
        )

    def flush(self) -> None:
        """Wait until every submitted write landed or was dead-lettered; raise the first failure."""
        with self._lock:
            submitted = list(self._submitted)
        # Waits; concurrent flushers wait on the same futures.
        errors = [f.exception() for f in submitted]
        with self._lock:
            self._submitted = [f for f in self._submitted if f not in submitted]
        failure = next((e for e in errors if e is not None), None)
        if failure is not None:
            raise failure

    def send(self, writes: list[Write], stream: str) -> None:
        """Every write lands or is dead-lettered before this returns; any other outcome raises."""
        items: Chunk = []
        for write in writes:
            message = self.to_message(write)
            data = encode(message)
            if len(data) > API_MESSAGE_LIMIT:
                self._dead(
                    stream, Item(write, message), f"message too large ({len(data)} bytes > 32 KB)"
                )
                continue
            items.append((Item(write, message), data))
        if not items:
            return
        client, pool = self._http()
        chunks = list(
            pack(
                items,
                max_bytes=self.settings.max_batch_bytes,
                max_messages=self.settings.max_batch_messages,
            )
        )
        futures = [pool.submit(self._deliver, client, chunk, stream) for chunk in chunks]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        if any(f.exception() is not None for f in done):
            # The run fails: siblings still retrying give up instead of holding the exit.
            self.abort()
            wait(pending)
            ordered = [*done, *(f for f in futures if f not in done)]
            failures = [e for e in (f.exception() for f in ordered) if e is not None]
            # The first cause, not a sibling that gave up because of it.
            raise next((e for e in failures if not isinstance(e, Aborted)), failures[0])

    def _deliver(self, client: httpx.Client, chunk: Chunk, stream: str) -> None:
        answer = self._post(client, batch_body([data for _, data in chunk]), len(chunk))
        status = answer.status
        body = _json(answer.content)
        if status in (401, 403):
            message = self.unauthorized(status)
            earlier = self.watch.accepted_total
            if earlier:
                message += (
                    f" It accepted {earlier} messages earlier in this run: was the key revoked "
                    "or rotated? STATE was not advanced."
                )
            raise ConfigError(message)
        if 200 <= status < 300:
            rejected = self.rejected_items(status, body, len(chunk)) or {}
            accepted = [item.write for i, (item, _) in enumerate(chunk) if i not in rejected]
            self.watch.accept([write.identifier.kind for write in accepted])
            if self.landing is not None:
                self.landing.add(accepted, update_only=self.update_only)
            self.stats.count("written", len(accepted))
            for index, reason in sorted(rejected.items()):
                self._refused(stream, chunk[index][0], reason, status)
            return
        if status in (400, 413, 422):
            self._isolate(client, chunk, stream, status, body)
            return
        raise DeliveryError(
            f"{self.api_name} API answered HTTP {status} to POST {self.path}; "
            f"check the API origin ({self.settings.base_url}) and region."
        )

    def _isolate(
        self, client: httpx.Client, chunk: Chunk, stream: str, status: int, body: Any
    ) -> None:
        """A rejected batch: drop the messages the error names (or bisect), land the rest."""
        named = self.rejected_items(status, body, len(chunk))
        if len(chunk) == 1:
            reason = (named or {}).get(0) or _reason(status, body)
            self._refused(stream, chunk[0][0], reason, status, size=len(chunk[0][1]))
            return
        if named:
            for index, reason in sorted(named.items()):
                self._refused(stream, chunk[index][0], reason, status)
            rest = [part for i, part in enumerate(chunk) if i not in named]
            if rest:
                self._deliver(client, rest, stream)
            return
        middle = len(chunk) // 2
        self._deliver(client, chunk[:middle], stream)
        self._deliver(client, chunk[middle:], stream)

    def _post(self, client: httpx.Client, body: bytes, messages: int) -> Answer:
        attempt = 0
        timeout = self.settings.request_timeout
        while True:
            if self._abort.is_set():
                raise Aborted(f"{self.api_name} sending stopped: the run is terminating.")
            self.stats.count("requests")
            retry_after: float | None = None
            try:
                with (
                    bounded.deadline(timeout),
                    client.stream("POST", self.path, content=body) as streamed,
                ):
                    content = bounded.read_capped(streamed, answer_cap(messages))
                    response = Answer(streamed.status_code, streamed.headers, content)
            except httpx.HTTPError as exc:
                if is_certificate_failure(exc):
                    raise CertificateError(
                        f"the TLS certificate of {self.settings.base_url} could not be verified: "
                        "check the API origin, and if a proxy inspects TLS, point SSL_CERT_FILE "
                        "at its CA certificate (verification is never turned off)."
                    ) from None
                if not is_retryable_error(exc):
                    raise DeliveryError(
                        f"{self.api_name} request failed: {type(exc).__name__}."
                    ) from None
                problem = _problem(exc, timeout)
            else:
                if not is_retryable_status(response.status):
                    return response
                problem = f"HTTP {response.status}"
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if not self.policy.allows(attempt):
                raise DeliveryError(
                    f"{self.api_name} API still failing after {attempt} retries ({problem}); "
                    f"nothing after the last STATE was acknowledged, so rerunning resumes safely."
                )
            delay = self.policy.delay(attempt, retry_after)
            self.logger.info(
                "%s API: %s, retry %d in %.1fs", self.api_name, problem, attempt + 1, delay
            )
            self.stats.count("retries")
            attempt += 1
            if self._abort.wait(delay):
                raise Aborted(f"{self.api_name} sending stopped: the run is terminating.")

    def _refused(
        self, stream: str, item: Item, reason: str, status: int, *, size: int | None = None
    ) -> None:
        """A message the API rejected: a dead letter; the run stops when a whole class is (or at
        once when a single message of `size` bytes, far below any limit, was too large)."""
        self._dead(stream, item, reason)
        self.watch.reject(item.write.identifier.kind, status, size=size)
        verdict = self.watch.verdict(EVIDENCE)
        if verdict is not None:
            self.abort()  # requests waiting to start or to retry give up now
            raise AllRejected(self.rejection_message(verdict))

    def _dead(self, stream: str, item: Item, reason: str) -> None:
        self.dead_letters.add(
            stream=stream,
            reason=reason,
            identifier=item.write.identifier,
            cio_id=item.write.cio_id,
            message=item.message,
        )
        self.stats.count("dead_lettered")


def _problem(exc: httpx.HTTPError, timeout: float) -> str:
    """A failed request in a few words, never the server's."""
    if isinstance(exc, httpx.TimeoutException):
        return f"no complete answer within {timeout:g} s"
    if isinstance(exc, bounded.AnswerTooLarge):
        return str(exc)
    return type(exc).__name__


def _json(content: bytes) -> Any:
    try:
        return msgspec.json.decode(content) if content else None
    except msgspec.DecodeError:
        return None


def _reason(status: int, body: Any) -> str:
    """A lone rejected message's reason, from either of Customer.io's error envelopes.

    Both APIs may answer with `{"meta": {"errors": [...]}}` or `{"errors": [...]}`: read both.
    """
    if isinstance(body, dict):
        errors = (body.get("meta") or {}).get("errors") or body.get("errors")
        if errors:
            return f"HTTP {status}: " + "; ".join(str(e) for e in errors)[:500]
    return f"HTTP {status}: rejected"


__all__ = ["Aborted", "AllRejected", "BatchSender", "Chunk", "Item", "Sender"]
