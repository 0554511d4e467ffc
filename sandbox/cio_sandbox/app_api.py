"""The Customer.io App API (read side): people, attributes, segments, suppressions, workspaces.

People are read from the lazily generated World by index, a page at a time, so a million-Person
world costs no more per request than a small one. Cursors are opaque and signed: a tampered one is
a 400. Every 4xx answers in the App API's envelope, ``{"errors":[{"detail","status"}]}``. What the
vendor's definitions leave open (the cio_id form hydration accepts, whether a cursor is an index or
a live offset, when a landed write shows) follows the switches in ``observe.Faults``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from typing import Any

from aiohttp import web

from .audience import (
    SCAN_BUDGET_ATTRIBUTES,
    SCAN_BUDGET_INDEX_ONLY,
    AudienceFilter,
    FilterError,
    Predicate,
    offset_page,
    scan,
)
from .http_faults import (
    ApiError,
    FaultProfile,
    Handler,
    bearer_token,
    count_middleware,
    errors_body,
    fault_middleware,
    json_errors_middleware,
    json_response,
    seeded_rng,
    shared_limiter,
    window_for_rate,
)
from .observe import Observatory
from .world import Person, World

WORKSPACE_ID = "912346"
WORKSPACE_NAME = "Sandbox workspace"
UNAUTHORIZED = "Unauthorized request. Make sure that you provided the right credentials."
SEARCH_LIMIT = (50, 1000)  # default, maximum
MEMBERSHIP_LIMIT = (1000, 30000)
SUPPRESSION_LIMIT = (1000, 1000)
MAX_ATTRIBUTE_IDS = 100
DEFAULT_RATE_LIMIT = 10.0
ID_TYPES = ("id", "cio_id", "email")
SUPPRESSION_TYPES = ("bounces", "blocks", "spam_reports", "invalid_emails")
# An older definition (SPEC-2022) enumerates the categories as bounces|blocks|spam|invalid:
# accepted as the same lists, answered under the name asked for.
SUPPRESSION_ALIASES = {"spam": "spam_reports", "invalid": "invalid_emails"}
CIO_ID_PREFIX = "cio_"


def bad_request(message: str) -> ApiError:
    return ApiError(400, errors_body(message, 400))


def not_found(detail: str) -> ApiError:
    return ApiError(404, errors_body(detail, 404))


# --- cursors -------------------------------------------------------------------------------------
class Cursors:
    """Opaque, signed page cursors: base64 of ``scope.index.mac``."""

    def __init__(self, world: World) -> None:
        self._secret = f"{world.seed}:{world.people_count}:{world.region}".encode()

    def _mac(self, scope: str, index: int) -> str:
        return hashlib.sha256(self._secret + f"|{scope}|{index}".encode()).hexdigest()[:12]

    def encode(self, scope: str, index: int | None) -> str:
        if index is None:
            return ""
        raw = f"{index}.{self._mac(scope, index)}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def decode(self, scope: str, token: str | None) -> int:
        if not token:
            return 0
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            index_text, mac = raw.split(".")
            index = int(index_text)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise bad_request("start: not a cursor this API returned") from None
        if index < 0 or not secrets.compare_digest(mac, self._mac(scope, index)):
            raise bad_request("start: not a cursor this API returned")
        return index


# --- shapes --------------------------------------------------------------------------------------
def identifiers(p: Person) -> dict[str, str | None]:
    return {"id": p.id, "email": p.email, "cio_id": p.cio_id}


def identifier_page(world: World, indexes: list[int], next_cursor: str) -> dict[str, Any]:
    people = [world.person(i) for i in indexes]
    return {
        "identifiers": [identifiers(p) for p in people],
        "ids": [p.id or "" for p in people],
        "next": next_cursor,
    }


def customer_object(p: Person, attributes: dict[str, str]) -> dict[str, Any]:
    created = int(attributes["created_at"])
    stamp = attributes.get("EV_Validation_Timestamp", "")
    verified = int(stamp) if stamp.isdigit() else created
    timestamps = {name: (verified if name.startswith("EV_") else created) for name in attributes}
    return {
        "id": p.id,
        "identifiers": identifiers(p),
        "attributes": attributes,
        "timestamps": timestamps,
        "unsubscribed": p.unsubscribed,
        "devices": [],
    }


def int_param(request: web.Request, name: str, default: int, maximum: int, minimum: int = 1) -> int:
    text = request.query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise bad_request(f"{name}: expected an integer") from None
    if not minimum <= value <= maximum:
        raise bad_request(f"{name}: must be between {minimum} and {maximum}")
    return value


async def json_body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read() or b"null")
    except (ValueError, UnicodeDecodeError):
        raise bad_request("request body is not valid JSON") from None


# --- the API -------------------------------------------------------------------------------------
class AppApi:
    """Handlers over one World; one instance per region server."""

    def __init__(self, world: World, obs: Observatory, region: str) -> None:
        self.world = world
        self.obs = obs
        self.region = region
        self.cursors = Cursors(world)
        self.limiter = shared_limiter(obs, "app")
        self._segment_counts: dict[tuple[int, int], int] = {}  # (segment, world version): count
        self._suppressions: dict[str, list[dict[str, object]]] = {}

    # --- gate: rate limit, then credentials ------------------------------------------------------
    def rate_limit_detail(self) -> tuple[int, float, str]:
        """The limit in force (the default one while it is off, for 429 storms) and its message."""
        count, period = window_for_rate(self.obs.faults.app_rate_limit or DEFAULT_RATE_LIMIT)
        detail = (
            f"rate limited to {count} requests per {period:g}s (reference {secrets.token_hex(6)})"
        )
        return count, period, detail

    def too_many(self) -> dict[str, Any]:
        return errors_body(self.rate_limit_detail()[2], 429)

    @web.middleware
    async def gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        token = bearer_token(request)
        if token is not None and self.obs.faults.app_rate_limit > 0:
            count, period, detail = self.rate_limit_detail()
            if not self.limiter.allow(token, count, period):
                self.obs.count_rate_limited("app")
                return json_response(
                    errors_body(detail, 429), status=429, headers={"Retry-After": "1"}
                )
        key = self.world.keys.app_api_key
        if (
            self.region != self.world.region
            or token is None
            or not secrets.compare_digest(token, key)
        ):
            return json_response(errors_body(UNAUTHORIZED, 401), status=401)
        return await handler(request)

    # --- people ----------------------------------------------------------------------------------
    async def search(self, request: web.Request) -> web.Response:
        limit = int_param(request, "limit", *SEARCH_LIMIT)
        live_offset = self.obs.faults.app_cursor_mode == "live_offset"
        # Each mode signs its cursors under its own scope: one from the other mode is a 400.
        scope = "customers:offset" if live_offset else "customers"
        start = self.cursors.decode(scope, request.query.get("start"))
        body = await json_body(request)
        if not isinstance(body, dict) or "filter" not in body:
            raise bad_request('filter: required, e.g. {"filter":{"attribute":{...}}}')
        try:
            audience = AudienceFilter(self.world, body["filter"], self.obs.visible_attributes)
        except FilterError as exc:
            raise bad_request(str(exc)) from None
        after: int | None
        if live_offset:
            found, more = offset_page(self.world, audience.matches, start, limit)
            after = start + len(found) if more else None
        else:
            budget = SCAN_BUDGET_ATTRIBUTES if audience.reads_attributes else SCAN_BUDGET_INDEX_ONLY
            found, after = scan(self.world, audience.matches, start, limit, budget)
        return json_response(identifier_page(self.world, found, self.cursors.encode(scope, after)))

    async def by_email(self, request: web.Request) -> web.Response:
        email = request.query.get("email")
        if not email:
            raise bad_request("email: required")
        person = self.world.person_by_email(email)
        results = (
            []
            if person is None
            else [{"email": person.email, "id": person.id, "cio_id": person.cio_id}]
        )
        return json_response({"results": results})

    def lookup(self, id_type: str, value: str) -> Person | None:
        """The Person ``value`` names, or None; a cio_id only in the form app_cio_id_form takes."""
        if id_type == "cio_id":
            form = self.obs.faults.app_cio_id_form
            prefixed = value.startswith(CIO_ID_PREFIX)
            if (prefixed and form == "raw") or (not prefixed and form == "prefixed"):
                return None
            return self.world.person_by_cio_id(value.removeprefix(CIO_ID_PREFIX))
        if id_type == "email":
            return self.world.person_by_email(value)
        return self.world.person_by_id(value)

    @staticmethod
    def id_type(request: web.Request) -> str:
        id_type = request.query.get("id_type", "id")
        if id_type not in ID_TYPES:
            raise bad_request(f"id_type: expected one of {', '.join(ID_TYPES)}")
        return id_type

    async def attributes_batch(self, request: web.Request) -> web.Response:
        id_type = self.id_type(request)
        body = await json_body(request)
        ids = body.get("ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_ATTRIBUTE_IDS:
            raise bad_request(f"ids: expected a list of 1 to {MAX_ATTRIBUTE_IDS} identifiers")
        if any(isinstance(v, bool) or not isinstance(v, str | int) for v in ids):
            raise bad_request("ids: every identifier must be a string")
        people = (self.lookup(id_type, str(v)) for v in ids)
        return json_response(
            {
                "customers": [
                    {"customer": customer_object(p, self.obs.current_attributes(p))}
                    for p in people
                    if p is not None
                ]
            }
        )

    async def attributes_one(self, request: web.Request) -> web.Response:
        person = self.lookup(self.id_type(request), request.match_info["customer_id"])
        if person is None:
            raise not_found("The customer_id does not exist.")
        return json_response(
            {"customer": customer_object(person, self.obs.current_attributes(person))}
        )

    # --- segments --------------------------------------------------------------------------------
    def segment(self, request: web.Request) -> dict[str, Any]:
        wanted = request.match_info["segment_id"]
        for segment in self.world.segments:
            if str(segment["id"]) == wanted:
                return segment
        raise not_found("segment not found")

    def segment_members(self, request: web.Request) -> tuple[int, Predicate]:
        """The requested segment's id and its membership rule."""
        segment_id = int(self.segment(request)["id"])
        rule = self.world.segment_rule(segment_id)
        if rule is None:  # never: every segment the world lists has a rule
            raise not_found("segment not found")
        return segment_id, rule

    async def segments(self, request: web.Request) -> web.Response:
        return json_response({"segments": self.world.segments})

    async def segment_one(self, request: web.Request) -> web.Response:
        return json_response({"segment": self.segment(request)})

    async def segment_count(self, request: web.Request) -> web.Response:
        segment_id, rule = self.segment_members(request)
        world = self.world
        key = (segment_id, world.version)
        if key not in self._segment_counts:
            self._segment_counts[key] = sum(
                1 for i in range(world.index_end) if world.is_live(i) and rule(i)
            )
        return json_response({"count": self._segment_counts[key], "segment_id": segment_id})

    async def membership(self, request: web.Request) -> web.Response:
        segment_id, rule = self.segment_members(request)
        limit = int_param(request, "limit", *MEMBERSHIP_LIMIT)
        scope = f"segment:{segment_id}"
        start = self.cursors.decode(scope, request.query.get("start"))
        found, after = scan(self.world, rule, start, limit, SCAN_BUDGET_INDEX_ONLY)
        return json_response(identifier_page(self.world, found, self.cursors.encode(scope, after)))

    # --- suppressions and workspaces -------------------------------------------------------------
    async def suppressions(self, request: web.Request) -> web.Response:
        asked = request.match_info["suppression_type"]
        kind = SUPPRESSION_ALIASES.get(asked, asked)
        if kind not in SUPPRESSION_TYPES:
            raise not_found(f"unknown suppression type; use one of {', '.join(SUPPRESSION_TYPES)}")
        limit = int_param(request, "limit", *SUPPRESSION_LIMIT)
        offset = int_param(request, "offset", 0, 10**9, minimum=0)
        if kind not in self._suppressions:
            self._suppressions[kind] = self.world.suppressions(kind)
        rows = self._suppressions[kind]
        domain = request.query.get("domain", "").strip().lower()
        if domain:
            rows = [r for r in rows if str(r["email"]).rpartition("@")[2] == domain]
        return json_response({"category": asked, "suppressions": rows[offset : offset + limit]})

    async def workspaces(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "workspaces": [
                    {
                        "id": WORKSPACE_ID,
                        "name": WORKSPACE_NAME,
                        "messages_sent": 0,
                        "billable_messages_sent": 0,
                        "people": self.world.live_count,
                        "object_types": 0,
                        "objects": 0,
                    }
                ]
            }
        )


def build_app_api(world: World, obs: Observatory, region: str | None = None) -> web.Application:
    """The App API as served for ``region``; a region other than the world's 401s every key."""
    api = AppApi(world, obs, region or world.region)
    profile = FaultProfile(
        service="app",
        error_status=503,
        error_body=lambda status: errors_body("Service Unavailable", status),
        storm_body=api.too_many,
        hang="stall",
    )
    app = web.Application(
        middlewares=[
            count_middleware(obs, "app"),
            fault_middleware(obs, profile, seeded_rng(world.seed, "app", api.region)),
            json_errors_middleware(errors_body),
            api.gate,
        ]
    )
    app.router.add_post("/v1/customers", api.search)
    app.router.add_get("/v1/customers", api.by_email)
    app.router.add_post("/v1/customers/attributes", api.attributes_batch)
    app.router.add_get("/v1/customers/{customer_id}/attributes", api.attributes_one)
    app.router.add_get("/v1/segments", api.segments)
    app.router.add_get("/v1/segments/{segment_id}", api.segment_one)
    app.router.add_get("/v1/segments/{segment_id}/customer_count", api.segment_count)
    app.router.add_get("/v1/segments/{segment_id}/membership", api.membership)
    app.router.add_get("/v1/esp/suppression/{suppression_type}", api.suppressions)
    app.router.add_get("/v1/workspaces", api.workspaces)
    return app
