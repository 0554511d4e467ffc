"""What every HTTP fake shares: request counts, injected faults, rate limits, credentials, errors.

Faults are drawn from a seeded ``random.Random`` per server, so a fresh sandbox given the same
requests injects the same faults. A switch that is off draws nothing, so turning one on never
shifts another.
"""

from __future__ import annotations

import asyncio
import binascii
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import BasicAuth, hdrs, web

from .observe import Observatory

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

JSON_HEADERS = {"Cache-Control": "must-revalidate,no-cache,no-store"}


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """JSON with ``Content-Type: application/json; charset=utf-8``, as Customer.io answers."""
    return web.json_response(data, status=status, headers={**JSON_HEADERS, **(headers or {})})


def errors_body(detail: str, status: int) -> dict[str, Any]:
    """The App API's current envelope: ``{"errors":[{"detail","status"}]}``."""
    return {"errors": [{"detail": detail, "status": str(status)}]}


# A strict-mode 400 on /v1/batch that names no call (pipelines_strict_names_items off).
UNNAMED_BATCH_ERROR = "batch: one or more calls failed validation"


def unnamed_batch_error(reasons: list[str]) -> str:
    """One error for a refused batch that says why but not which calls: a client must split the
    batch to find them (``UNNAMED_BATCH_ERROR (reason; other reason)``, reasons deduplicated)."""
    distinct = sorted(set(reasons))
    return f"{UNNAMED_BATCH_ERROR} ({'; '.join(distinct)})" if distinct else UNNAMED_BATCH_ERROR


def meta_errors_body(*messages: str) -> dict[str, Any]:
    """The older envelope Customer.io keeps for 400s: ``{"meta":{"errors":[...]}}``."""
    return {"meta": {"errors": list(messages)}}


def endpoint_name(request: web.Request) -> str:
    """``"<METHOD> <route template>"``, so counters group every cursor and id under one name."""
    resource = request.match_info.route.resource
    template = resource.canonical if resource is not None else "<unmatched>"
    return f"{request.method} {template}"


# --- credentials ---------------------------------------------------------------------------------
def bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def basic_credentials(request: web.Request) -> tuple[str, str] | None:
    """``(user, password)`` of an HTTP Basic header, None when absent or unreadable."""
    header = request.headers.get(hdrs.AUTHORIZATION, "")
    if not header.lower().startswith("basic "):
        return None
    try:
        auth = BasicAuth.decode(header)
    except (ValueError, binascii.Error):
        return None
    return auth.login, auth.password


# --- rate limits ---------------------------------------------------------------------------------
class SlidingWindowLimiter:
    """At most ``count`` requests per key within any ``period`` seconds.

    A plain token bucket lets twice its capacity through in a second that straddles a refill;
    Customer.io documents "10 requests per 1s", so this counts the requests of the last ``period``.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._accepted: dict[str, deque[float]] = {}

    def allow(self, key: str, count: int, period: float) -> bool:
        now = self._clock()
        window = self._accepted.setdefault(key, deque())
        while window and window[0] <= now - period:
            window.popleft()
        if len(window) >= count:
            return False
        window.append(now)
        return True


def window_for_rate(rate: float) -> tuple[int, float]:
    """``(count, period)`` for a requests-per-second figure: 10 -> 10 per 1s, 0.5 -> 1 per 2s."""
    if rate >= 1:
        return int(rate), 1.0
    return 1, 1.0 / rate


_shared_limiters: weakref.WeakKeyDictionary[Observatory, dict[str, SlidingWindowLimiter]] = (
    weakref.WeakKeyDictionary()
)
_shared_lock = threading.Lock()


def shared_limiter(obs: Observatory, name: str) -> SlidingWindowLimiter:
    """One limiter per service and sandbox: both App API region servers draw on one budget."""
    with _shared_lock:
        per_obs = _shared_limiters.setdefault(obs, {})
        return per_obs.setdefault(name, SlidingWindowLimiter())


# --- faults --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FaultProfile:
    """How one service misbehaves when its ``Faults`` switches are on.

    ``service`` is the prefix of the switches in ``Faults`` (``app``, ``pipelines``); ``hang`` names
    the switch pair that makes a request hang (``stall`` for the App API, ``timeout`` for CDP).
    """

    service: str
    error_status: int
    error_body: Callable[[int], dict[str, Any]]
    storm_body: Callable[[], dict[str, Any]]
    hang: str


def count_middleware(obs: Observatory, service: str) -> Any:
    """Every request is counted, whatever answer (or none) it gets."""

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        obs.count_request(service, endpoint_name(request))
        return await handler(request)

    return count


def fault_middleware(obs: Observatory, profile: FaultProfile, rng: random.Random) -> Any:
    """Apply the faults that are on, in a network's order: reset, delay, hang, 429, 5xx."""
    svc = profile.service

    def switch(name: str) -> Any:
        return getattr(obs.faults, f"{svc}_{name}")

    def roll(rate: float) -> bool:
        return rate > 0 and (rate >= 1 or rng.random() < rate)

    @web.middleware
    async def faults(request: web.Request, handler: Handler) -> web.StreamResponse:
        if roll(switch("drop_rate")):
            obs.count_fault(f"{svc}_drop")
            return await drop_connection(request)
        latency = switch("latency")
        if latency > 0:
            obs.count_fault(f"{svc}_latency")
            await asyncio.sleep(latency)
        if roll(switch(f"{profile.hang}_rate")):
            obs.count_fault(f"{svc}_{profile.hang}")
            await asyncio.sleep(switch(f"{profile.hang}_seconds"))
        if time.monotonic() < switch("429_storm_until"):
            obs.count_fault(f"{svc}_429_storm")
            obs.count_rate_limited(svc)
            return json_response(profile.storm_body(), status=429, headers={"Retry-After": "1"})
        if roll(switch("error_rate")):
            obs.count_fault(f"{svc}_error")
            return json_response(
                profile.error_body(profile.error_status), status=profile.error_status
            )
        reject_ids = getattr(obs.faults, f"{svc}_reject_ids", None)
        if reject_ids:
            named = await rejected_calls(request, reject_ids)
            if named:
                obs.count_fault(f"{svc}_reject")
                obs.record_rejection("; ".join(named))
                if not getattr(obs.faults, f"{svc}_strict_names_items", True):
                    named = [unnamed_batch_error([n.partition(": ")[2] for n in named])]
                return json_response(meta_errors_body(*named), status=400)
        if roll(getattr(obs.faults, f"{svc}_lost_answer_rate", 0.0)):
            obs.count_fault(f"{svc}_lost_answer")
            response = await handler(request)
            await asyncio.sleep(switch(f"{profile.hang}_seconds"))
            return response
        return await handler(request)

    return faults


async def rejected_calls(request: web.Request, ids: frozenset[str]) -> list[str]:
    """``batch[i]: ...`` for each identify call of the body whose userId or email is in ``ids``."""
    try:
        payload = await request.json()
    except ValueError:
        return []
    calls = payload.get("batch") if isinstance(payload, dict) else None
    if not isinstance(calls, list):
        calls = [payload]
    wanted = {i.lower() for i in ids}
    named = []
    for index, call in enumerate(calls):
        if not isinstance(call, dict):
            continue
        traits = call.get("traits")
        if not isinstance(traits, dict):
            traits = {}
        who = {str(call.get("userId") or "").lower(), str(traits.get("email") or "").lower()}
        if who & wanted:
            named.append(f"batch[{index}]: rejected (fault injection)")
    return named


async def drop_connection(request: web.Request) -> web.StreamResponse:
    """Close the socket without a byte of answer, as a reset load balancer does."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    # aiohttp sees the closed transport and writes nothing; the response only satisfies the type.
    return web.Response(status=499)


class ApiError(Exception):
    """A finished error answer raised deep in a handler (bad cursor, bad filter, unknown id)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def json_errors_middleware(body: Callable[[str, int], dict[str, Any]]) -> Any:
    """``ApiError`` and aiohttp's own 404/405/413 answer in the service's JSON envelope."""

    @web.middleware
    async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return json_response(exc.body, status=exc.status)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed, web.HTTPRequestEntityTooLarge) as exc:
            return json_response(body(exc.reason.lower(), exc.status), status=exc.status)

    return json_errors


def seeded_rng(seed: int, *scope: str) -> random.Random:
    """The fault dice of one server: repeatable per world seed, independent between servers."""
    return random.Random(":".join((str(seed), *scope)))
