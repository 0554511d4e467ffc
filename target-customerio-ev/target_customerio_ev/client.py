"""Small batch senders for the Pipelines API (`/v1/batch`) and the Track API v2 (`/api/v2/batch`).

Why not `customerio-cdp-analytics`: it queues asynchronously and drops what fails, while a Singer
target must know that every message of a batch landed (or was dead-lettered) before STATE moves on.
`send()` returns only when each write has landed or been dead-lettered, and raises otherwise.
`submit()` runs a send in the background so the next batch can be read meanwhile; `flush()` waits
for every submitted send and raises its failure. The target flushes before each STATE it emits, so
STATE never runs ahead of the API.
"""

from __future__ import annotations

import logging
import re
import threading
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
import msgspec

from . import __version__
from .deadletter import DeadLetters
from .encode import batch_body, encode, pipelines_identify, track_person
from .identify import Write
from .packing import pack
from .retry import (
    RetryPolicy,
    is_certificate_failure,
    is_retryable_error,
    is_retryable_status,
    retry_after_seconds,
)
from .settings import API_MESSAGE_LIMIT, Settings
from .summary import RunStats


class DeliveryError(Exception):
    """A failure the user must act on; its message is one line without secrets or personal data."""


class Aborted(DeliveryError):
    """The run is terminating; requests still waiting to retry give up."""


@dataclass(frozen=True)
class Item:
    write: Write
    message: dict[str, Any]


Chunk = list[tuple[Item, bytes]]


class BatchSender:
    """Shared machinery: packing, requests in flight, retries, 400 isolation, dead letters."""

    path: ClassVar[str]
    api_name: ClassVar[str]

    def __init__(
        self,
        settings: Settings,
        stats: RunStats,
        dead_letters: DeadLetters,
        logger: logging.Logger,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = settings
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

    # ------------------------------------------------------------------ wiring
    def auth(self) -> tuple[str, str]:
        raise NotImplementedError

    def to_message(self, write: Write) -> dict[str, Any]:
        raise NotImplementedError

    def unauthorized(self, status: int) -> str:
        raise NotImplementedError

    def rejected_items(self, status: int, body: Any, size: int) -> dict[int, str] | None:
        """Per-item rejections named by the response, or None when it does not say which."""
        raise NotImplementedError

    def _http(self) -> tuple[httpx.Client, ThreadPoolExecutor]:
        with self._lock:
            if self._client is None:
                n = self.settings.max_in_flight
                self._client = httpx.Client(
                    base_url=self.settings.base_url,
                    auth=self.auth(),
                    timeout=self.settings.request_timeout,
                    limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
                    headers={
                        "Content-Type": "application/json",
                        "User-Agent": f"target-customerio-ev/{__version__}",
                        **self.extra_headers,
                    },
                    transport=self._transport,
                )
                self._pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="cio-send")
            assert self._pool is not None
            return self._client, self._pool

    extra_headers: ClassVar[dict[str, str]] = {}

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

    def flush(self) -> None:
        """Wait until every submitted write landed or was dead-lettered; raise the first failure."""
        with self._lock:
            submitted = list(self._submitted)
        errors = [
            f.exception() for f in submitted
        ]  # waits; concurrent flushers wait on the same futures
        with self._lock:
            self._submitted = [f for f in self._submitted if f not in submitted]
        failure = next((e for e in errors if e is not None), None)
        if failure is not None:
            raise failure

    def send(self, writes: list[Write], stream: str) -> None:
        """Every write lands or is dead-lettered before this returns; any other outcome raises."""
        items: list[tuple[Item, bytes]] = []
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
        failed = [f for f in done if f.exception() is not None]
        if failed:
            # The run fails: siblings still retrying give up instead of holding the exit.
            self.abort()
            wait(pending)
            raise failed[0].exception()  # type: ignore[misc]

    def _deliver(self, client: httpx.Client, chunk: Chunk, stream: str) -> None:
        response = self._post(client, batch_body([data for _, data in chunk]))
        status = response.status_code
        body = _json(response)
        if status in (401, 403):
            raise DeliveryError(self.unauthorized(status))
        if 200 <= status < 300:
            rejected = self.rejected_items(status, body, len(chunk)) or {}
            for index, reason in sorted(rejected.items()):
                self._dead(stream, chunk[index][0], reason)
            self.stats.add("written", len(chunk) - len(rejected))
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
            self._dead(stream, chunk[0][0], reason)
            return
        if named:
            for index, reason in sorted(named.items()):
                self._dead(stream, chunk[index][0], reason)
            rest = [part for i, part in enumerate(chunk) if i not in named]
            if rest:
                self._deliver(client, rest, stream)
            return
        middle = len(chunk) // 2
        self._deliver(client, chunk[:middle], stream)
        self._deliver(client, chunk[middle:], stream)

    def _post(self, client: httpx.Client, body: bytes) -> httpx.Response:
        attempt = 0
        while True:
            if self._abort.is_set():
                raise Aborted(f"{self.api_name} sending stopped: the run is terminating.")
            self.stats.add("requests")
            retry_after: float | None = None
            try:
                response = client.post(self.path, content=body)
            except httpx.HTTPError as exc:
                if is_certificate_failure(exc):
                    raise DeliveryError(
                        f"the TLS certificate of {self.settings.base_url} could not be verified: check "
                        f"the API origin, and if a proxy inspects TLS, point SSL_CERT_FILE at its CA "
                        f"certificate (verification is never turned off)."
                    ) from None
                if not is_retryable_error(exc):
                    raise DeliveryError(
                        f"{self.api_name} request failed: {type(exc).__name__}."
                    ) from None
                problem = type(exc).__name__
            else:
                if not is_retryable_status(response.status_code):
                    return response
                problem = f"HTTP {response.status_code}"
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            if not self.policy.allows(attempt):
                raise DeliveryError(
                    f"{self.api_name} API still failing after {attempt} retries ({problem}); "
                    f"nothing after the last STATE was acknowledged, so rerunning resumes safely."
                )
            delay = self.policy.delay(attempt, retry_after)
            self.logger.info(
                "%s API: %s, retry %d in %.1fs", self.api_name, problem, attempt + 1, delay
            )
            self.stats.add("retries")
            attempt += 1
            if self._abort.wait(delay):
                raise Aborted(f"{self.api_name} sending stopped: the run is terminating.")

    def _dead(self, stream: str, item: Item, reason: str) -> None:
        self.stats.add("dead_lettered")
        self.dead_letters.add(
            stream=stream,
            reason=reason,
            identifier=item.write.identifier,
            cio_id=item.write.cio_id,
            message=item.message,
        )


class PipelinesSender(BatchSender):
    path = "/v1/batch"
    api_name = "Pipelines"
    extra_headers: ClassVar[dict[str, str]] = {"X-Strict-Mode": "1"}
    _INDEX = re.compile(r"batch\[(\d+)\]")

    def auth(self) -> tuple[str, str]:
        return (self.settings.pipelines_api_key, "")

    def to_message(self, write: Write) -> dict[str, Any]:
        return pipelines_identify(write)

    def unauthorized(self, status: int) -> str:
        return (
            f"Customer.io Pipelines API refused the write key (HTTP {status}): pipelines_api_key "
            f"must be the Pipelines (CDP) API write key of a 'Customer.io API' source, not an App "
            f"API or Track API key, and region '{self.settings.region}' must match the workspace."
        )

    def rejected_items(self, status: int, body: Any, size: int) -> dict[int, str] | None:
        errors = (body.get("meta") or {}).get("errors") if isinstance(body, dict) else None
        if status != 400 or not isinstance(errors, list):
            return None
        named: dict[int, str] = {}
        for error in errors:
            match = self._INDEX.search(str(error))
            if match is None:
                return None  # an error about the whole request: bisect instead
            index = int(match.group(1))
            if not 0 <= index < size:
                return None
            named[index] = str(error)
        return named or None


class TrackSender(BatchSender):
    path = "/api/v2/batch"
    api_name = "Track"

    def auth(self) -> tuple[str, str]:
        return (self.settings.track_site_id, self.settings.track_api_key)

    def to_message(self, write: Write) -> dict[str, Any]:
        return track_person(write, update_only=self.settings.update_only)

    def unauthorized(self, status: int) -> str:
        return (
            f"Customer.io Track API refused the credentials (HTTP {status}): check track_site_id "
            f"and track_api_key (Track API, not the App API or Pipelines key) and that region "
            f"'{self.settings.region}' matches the workspace."
        )

    def rejected_items(self, status: int, body: Any, size: int) -> dict[int, str] | None:
        errors = body.get("errors") if isinstance(body, dict) else None
        if status not in (207, 400) or not isinstance(errors, list):
            return None
        named: dict[int, str] = {}
        for error in errors:
            index = error.get("batch_index") if isinstance(error, dict) else None
            if not isinstance(index, int) or not 0 <= index < size:
                return None
            detail = ", ".join(
                str(error[k]) for k in ("reason", "field", "message") if error.get(k)
            )
            named[index] = (
                named.get(index, "") + ("; " if index in named else "") + (detail or "rejected")
            )
        return named or None


def make_sender(
    settings: Settings, stats: RunStats, dead_letters: DeadLetters, logger: logging.Logger
) -> BatchSender:
    cls = TrackSender if settings.api == "track" else PipelinesSender
    return cls(settings, stats, dead_letters, logger)


def _json(response: httpx.Response) -> Any:
    try:
        return msgspec.json.decode(response.content) if response.content else None
    except msgspec.DecodeError:
        return None


def _reason(status: int, body: Any) -> str:
    if isinstance(body, dict):
        errors = (body.get("meta") or {}).get("errors") or body.get("errors")
        if errors:
            return f"HTTP {status}: " + "; ".join(str(e) for e in errors)[:500]
    return f"HTTP {status}: rejected"


__all__ = ["BatchSender", "DeliveryError", "PipelinesSender", "TrackSender", "make_sender"]
