"""The write side: the Pipelines (CDP) API and the Track API, landing traits in the Observatory.

Pipelines answers 200 ``{}`` to anything unless the caller sends ``X-Strict-Mode: 1``: a bad key,
an oversized or malformed call is then silently dropped (counted in ``obs.dropped_calls``). In
strict mode a rejected request lands nothing at all, so a client can bisect a batch to find the
offending item (the 400 names the items only when ``pipelines_strict_names_items`` is on). Auth is
HTTP Basic with the write key as the user, as the definition says; a Bearer header is a bad key.
Switches in ``observe.Faults`` decide what the definitions leave open: email-only identifies
(``pipelines_email_only``) and writes that never land (``lose_writes_for``).
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import msgspec
from aiohttp import web

from .app_api import WORKSPACE_ID
from .http_faults import (
    FaultProfile,
    Handler,
    basic_credentials,
    count_middleware,
    fault_middleware,
    json_errors_middleware,
    json_response,
    meta_errors_body,
    seeded_rng,
    shared_limiter,
    unnamed_batch_error,
)
from .observe import Observatory
from .world import Person, World

MAX_MESSAGE_BYTES = 32 * 1024  # one call, or one item of a batch
MAX_REQUEST_BYTES = 500 * 1024  # one request
CLIENT_MAX_SIZE = (
    8 * 1024 * 1024
)  # read bodies well past the limits, so they get the API's own answer
SOFT_LIMIT = (
    3000,
    3.0,
)  # requests per seconds per write key, "not strictly enforced" by Customer.io
CALL_TYPES = ("identify", "track", "page", "screen", "group", "alias")
TRACK_NOOP_ACTIONS = frozenset(
    {
        "event",
        "screen",
        "page",
        "delete",
        "add_device",
        "delete_device",
        "add_relationship",
        "delete_relationship",
        "merge",
        "suppress",
        "unsuppress",
    }
)
TRACK_IDENTIFIERS = ("id", "email", "cio_id")
EMAIL_SHAPE = re.compile(r"^[^@\s]+@[^@\s]+$")
EMAIL_ONLY_REFUSED = "identify needs a userId or an anonymousId (traits.email alone is refused)"


def message_size(message: Any) -> int:
    """Bytes of the compact UTF-8 JSON form, the most lenient reading of "32 KB per call"."""
    return len(msgspec.json.encode(message))


def find_person(world: World, kind: str, value: str) -> Person | None:
    if kind == "cio_id":
        return world.person_by_cio_id(value)
    if kind == "email":
        return world.person_by_email(value)
    return world.person_by_id(value)


def infer_identifier(value: str) -> tuple[str, str]:
    """Identifiers are read by shape: ``cio_…`` is a cio_id, ``a@b`` an email, else an id."""
    if value.startswith("cio_"):
        return "cio_id", value[4:]
    if EMAIL_SHAPE.match(value.strip()):
        return "email", value
    return "id", value


def present(value: Any) -> bool:
    return value is not None and value != ""


def is_email_only(message: Any) -> bool:
    """An identify with no userId, no anonymousId, and traits.email: matches neither schema
    variant (Known user, Anonymous) of the definition; only prose allows it."""
    if not isinstance(message, dict):
        return False
    traits = message.get("traits")
    return (
        message.get("type") == "identify"
        and not present(message.get("userId"))
        and not present(message.get("anonymousId"))
        and isinstance(traits, dict)
        and present(traits.get("email"))
    )


def addressed_by(message: dict[str, Any]) -> str | None:
    """How an identify addresses its Person: "id", "email" or "cio_id" (None: anonymous)."""
    user_id = message.get("userId")
    if present(user_id):
        return infer_identifier(str(user_id))[0]
    return "email" if is_email_only(message) else None


# --- Pipelines -----------------------------------------------------------------------------------
def call_problem(message: Any, size: int, *, email_only: str = "accept") -> str | None:
    """Why Customer.io would refuse this call, or None (``email_only``: pipelines_email_only)."""
    if not isinstance(message, dict):
        return "expected an object"
    kind = message.get("type")
    if not present(kind):
        return "missing type"
    if kind not in CALL_TYPES:
        return f"unknown type; expected one of {', '.join(CALL_TYPES)}"
    if size > MAX_MESSAGE_BYTES:
        return f"message is {size} bytes, over the 32 KB limit"
    if kind != "identify":
        return None
    traits = message.get("traits", {})
    if traits is not None and not isinstance(traits, dict):
        return "traits must be an object"
    for name in ("userId", "anonymousId"):
        value = message.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, str | int | float)
        ):
            return f"{name} must be a string"
    email = (traits or {}).get("email")
    if present(message.get("userId")) or present(message.get("anonymousId")):
        return None
    if present(email):
        if email_only == "reject":
            return EMAIL_ONLY_REFUSED
        return None
    return "identify needs a userId, an anonymousId, or an empty userId with traits.email"


class PipelinesApi:
    def __init__(self, world: World, obs: Observatory) -> None:
        self.world = world
        self.obs = obs
        self.soft_limiter = shared_limiter(obs, "pipelines")

    def authorized(self, request: web.Request) -> bool:
        """HTTP Basic with the write key as the user (the password is blank and not read)."""
        basic = basic_credentials(request)
        return basic is not None and secrets.compare_digest(
            basic[0], self.world.keys.pipelines_api_key
        )

    @web.middleware
    async def soft_throttle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        count, period = SOFT_LIMIT
        if not self.soft_limiter.allow(request.headers.get("Authorization", ""), count, period):
            self.obs.count_rate_limited("pipelines")
            return json_response(
                meta_errors_body("rate limited"), status=429, headers={"Retry-After": "1"}
            )
        return await handler(request)

    def refuse(self, strict: bool, status: int, *errors: str) -> web.Response:
        if strict:
            self.obs.record_rejection("; ".join(errors))
            return json_response(meta_errors_body(*errors), status=status)
        self.obs.count_dropped("; ".join(errors))
        return json_response({})

    def endpoint(self, kind: str) -> Handler:
        """The handler of ``POST /v1/{kind}``: ``batch`` or one call type."""

        async def handle(request: web.Request) -> web.Response:
            return await self.receive(request, kind)

        return handle

    async def receive(self, request: web.Request, kind: str) -> web.Response:
        strict = request.headers.get("X-Strict-Mode", "").strip() == "1"
        if not self.authorized(request):
            return self.refuse(
                strict, 401, "unauthorized: send the Pipelines API key as the HTTP Basic user"
            )
        body = await request.read()
        if len(body) > MAX_REQUEST_BYTES:
            return self.refuse(strict, 400, f"request is {len(body)} bytes, over the 500 KB limit")
        try:
            payload = msgspec.json.decode(body)
        except msgspec.DecodeError:
            return self.refuse(strict, 400, "request body is not valid JSON")
        if not isinstance(payload, dict):
            return self.refuse(strict, 400, "request body must be a JSON object")
        if kind == "batch":
            messages = payload.get("batch")
            if not isinstance(messages, list):
                return self.refuse(strict, 400, "batch: expected a list of calls")
            labels = [f"batch[{i}]" for i in range(len(messages))]
            # A body within the per-call limit cannot hold a call over it: skip measuring each one.
            small = len(body) <= MAX_MESSAGE_BYTES
            sizes = [len(body) if small else message_size(m) for m in messages]
        else:
            messages, labels, sizes = [{**payload, "type": kind}], [kind], [len(body)]
        faults = self.obs.faults
        email_only = faults.pipelines_email_only
        reasons = {
            i: p
            for i, m in enumerate(messages)
            if (p := call_problem(m, sizes[i], email_only=email_only)) is not None
        }
        problems = {i: f"{labels[i]}: {p}" for i, p in reasons.items()}
        for reason in reasons.values():
            if reason == EMAIL_ONLY_REFUSED:
                self.obs.count_lost("pipelines_email_only:reject")
        if problems and strict:
            self.obs.record_rejection("; ".join(problems.values()))
            named = kind != "batch" or faults.pipelines_strict_names_items
            shown = (
                list(problems.values()) if named else [unnamed_batch_error(list(reasons.values()))]
            )
            return json_response(meta_errors_body(*shown), status=400)
        for i, message in enumerate(messages):
            if i in problems:
                self.obs.count_dropped(problems[i])
            elif message["type"] == "identify":
                self.land_identify(message)
        return json_response({})

    def land_identify(self, message: dict[str, Any]) -> None:
        """Upsert the traits onto the Person the call addresses, unless a switch loses the call."""
        faults = self.obs.faults
        if faults.pipelines_email_only == "drop" and is_email_only(message):
            self.obs.count_lost("pipelines_email_only:drop")
            return
        lost_for = faults.lose_writes_for
        if lost_for is not None and addressed_by(message) == lost_for:
            self.obs.count_lost(f"lose_writes_for:{lost_for}")
            return
        traits = dict(message.get("traits") or {})
        user_id, email = message.get("userId"), traits.get("email")
        person: Person | None = None
        if present(user_id):
            identifier = str(user_id)
            person = find_person(self.world, *infer_identifier(identifier))
        elif present(email):
            identifier = str(email)
            person = self.world.person_by_email(identifier)
        else:
            identifier = str(message["anonymousId"])
        key = person.cio_id if person is not None else f"new:{identifier}"
        message_id = message.get("messageId")
        self.obs.land(key, traits, None if message_id is None else str(message_id))


def build_pipelines_api(world: World, obs: Observatory) -> web.Application:
    api = PipelinesApi(world, obs)
    profile = FaultProfile(
        service="pipelines",
        error_status=500,
        error_body=lambda status: meta_errors_body("internal server error"),
        storm_body=lambda: meta_errors_body("rate limited"),
        hang="timeout",
    )
    app = web.Application(
        client_max_size=CLIENT_MAX_SIZE,
        middlewares=[
            count_middleware(obs, "pipelines"),
            fault_middleware(obs, profile, seeded_rng(world.seed, "pipelines")),
            json_errors_middleware(lambda detail, status: meta_errors_body(detail)),
            api.soft_throttle,
        ],
    )
    for kind in ("batch", *CALL_TYPES):
        app.router.add_post(f"/v1/{kind}", api.endpoint(kind))
    return app


# --- Track ---------------------------------------------------------------------------------------
def track_error(reason: str, field: str, message: str, index: int | None = None) -> dict[str, Any]:
    error = {"reason": reason, "field": field, "message": message}
    return error if index is None else {"batch_index": index, **error}


def track_item_problem(item: Any) -> dict[str, Any] | None:
    """Why Track v2 would refuse this batch item (as an error without its index), or None."""
    if not isinstance(item, dict):
        return track_error("invalid", "", "item must be an object")
    size = message_size(item)
    if size > MAX_MESSAGE_BYTES:
        return track_error("too_large", "", f"item is {size} bytes, over the 32 KB limit")
    if item.get("type") != "person":
        return track_error("invalid", "type", 'only type "person" is supported here')
    ids = item.get("identifiers")
    if (
        not isinstance(ids, dict)
        or len(ids) != 1
        or next(iter(ids)) not in TRACK_IDENTIFIERS
        or not present(next(iter(ids.values())))
    ):
        return track_error(
            "invalid", "identifiers", "exactly one of id, email or cio_id is required"
        )
    action = item.get("action")
    if action != "identify" and action not in TRACK_NOOP_ACTIONS:
        return track_error("invalid", "action", "unknown action")
    if not isinstance(item.get("attributes", {}), dict):
        return track_error("invalid", "attributes", "attributes must be an object")
    return None


class TrackApi:
    def __init__(self, world: World, obs: Observatory) -> None:
        self.world = world
        self.obs = obs

    @web.middleware
    async def gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        keys = self.world.keys
        creds = basic_credentials(request)
        if creds is None or not (
            secrets.compare_digest(creds[0], keys.track_site_id)
            and secrets.compare_digest(creds[1], keys.track_api_key)
        ):
            return json_response({"meta": {"error": "Unauthorized request"}}, status=401)
        return await handler(request)

    def identify(self, kind: str, value: str, attributes: dict[str, Any]) -> None:
        """Upsert, or update only when ``_update`` is true: then an unknown Person is left alone."""
        lost_for = self.obs.faults.lose_writes_for
        if lost_for is not None and kind == lost_for:
            self.obs.count_lost(f"lose_writes_for:{lost_for}")
            return
        attributes = dict(attributes)
        update_only = attributes.pop("_update", False) is True
        person = find_person(self.world, kind, value)
        if person is None and update_only:
            return
        self.obs.land(person.cio_id if person is not None else f"new:{value}", attributes, None)

    async def region(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "url": f"{request.scheme}://{request.host}",
                "region": self.world.region,
                "environment_id": int(WORKSPACE_ID),
            }
        )

    async def put_customer(self, request: web.Request) -> web.Response:
        body = await request.read()
        if len(body) > MAX_MESSAGE_BYTES:
            return json_response({"meta": {"error": "request is over the 32 KB limit"}}, status=400)
        try:
            attributes = json.loads(body or b"{}")
        except (ValueError, UnicodeDecodeError):
            attributes = None
        if not isinstance(attributes, dict):
            return json_response(
                {"meta": {"error": "request body must be a JSON object"}}, status=400
            )
        self.identify(*infer_identifier(request.match_info["identifier"]), attributes)
        return json_response({})

    async def batch(self, request: web.Request) -> web.Response:
        body = await request.read()
        if len(body) > MAX_REQUEST_BYTES:
            error = track_error(
                "too_large", "batch", f"request is {len(body)} bytes, over the 500 KB limit"
            )
            return json_response({"errors": [error]}, status=400)
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return json_response(
                {"errors": [track_error("invalid", "", "body is not valid JSON")]}, status=400
            )
        items = payload.get("batch") if isinstance(payload, dict) else None
        if not isinstance(items, list):
            error = track_error("invalid", "batch", 'expected {"batch": [...]}')
            return json_response({"errors": [error]}, status=400)
        errors = []
        for index, item in enumerate(items):
            problem = track_item_problem(item)
            if problem is not None:
                errors.append({"batch_index": index, **problem})
            elif item["action"] == "identify":
                ((kind, value),) = item["identifiers"].items()
                self.identify(kind, str(value), item.get("attributes") or {})
        return json_response({"errors": errors}, status=207) if errors else json_response({})


def build_track_api(world: World, obs: Observatory) -> web.Application:
    api = TrackApi(world, obs)
    app = web.Application(
        client_max_size=CLIENT_MAX_SIZE,
        middlewares=[
            count_middleware(obs, "track"),
            json_errors_middleware(lambda detail, status: {"meta": {"error": detail}}),
            api.gate,
        ],
    )
    app.router.add_get("/api/v1/accounts/region", api.region)
    app.router.add_put("/api/v1/customers/{identifier}", api.put_customer)
    app.router.add_post("/api/v2/batch", api.batch)
    return app
