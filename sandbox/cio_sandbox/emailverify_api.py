"""The EmailVerify.io API: answers what an outside verifier would say of each address of the world.

Its vocabulary differs from ours (``valid/permitted``, ``catch-all/accept_all`` …), so the mapper's
remote backend has real translation work to do. Credits run out when
``obs.faults.emailverify_credits`` reaches 0; ``unknown`` answers are free, as EmailVerify.io bills.
"""

from __future__ import annotations

import re
import secrets

from aiohttp import web

from .http_faults import count_middleware, json_errors_middleware, json_response
from .observe import Observatory
from .world import World, normalize_address
from .world_data import ROLE_MAILBOXES

UNLIMITED_CREDITS = 1_000_000
NOT_AN_ADDRESS = ("invalid", "failed_syntax_check")
# One @, no whitespace, none of RFC 5322's specials outside a quoted local part (nobody uses those).
ADDRESS_SHAPE = re.compile(r'[^@\s"(),:;<>\[\]\\]+@[^@\s"(),:;<>\[\]\\]+\.[^@\s"(),:;<>\[\]\\]+')

# (our EV_Status, EV_SubStatus) -> (EmailVerify.io status, sub_status)
ANSWERS: dict[tuple[str, str], tuple[str, str]] = {
    ("Valid", "mailbox_exists"): ("valid", "permitted"),
    ("Valid", "role_based"): ("role_based", "role_based"),
    ("Invalid", "invalid_syntax"): NOT_AN_ADDRESS,
    ("Invalid", "domain_not_found"): ("invalid", "no_dns_entries"),
    ("Invalid", "no_mx_record"): ("invalid", "no_dns_entries"),
    ("Invalid", "null_mx"): ("invalid", "null_mx"),
    ("Invalid", "mailbox_not_found"): ("invalid", "mailbox_not_found"),
    ("Invalid", "mailbox_disabled"): ("invalid", "mailbox_disabled"),
    ("Invalid", "mailbox_full"): ("invalid", "mailbox_quota_exceeded"),
    ("Disposable", "disposable_domain"): ("do_not_mail", "disposable"),
    ("Catch-All", "catch_all"): ("catch-all", "accept_all"),
    ("Unknown", "greylisted"): ("unknown", "greylisted"),
    ("Unknown", "smtp_timeout"): ("unknown", "timeout_exceeded"),
    ("Unknown", "smtp_blocked"): ("unknown", "antispam_system"),
    ("Unknown", "smtp_connection_failed"): ("unknown", "mail_server_did_not_respond"),
    ("Unknown", "dns_error"): ("unknown", "mail_server_did_not_respond"),
    ("Unknown", "provider_unverifiable"): ("unknown", "provider_unverifiable"),
}
# A verifier without our bounce history only sees what the mail host says of the mailbox.
MAILBOX_ANSWERS = {
    "exists": ("valid", "permitted"),
    "unknown": ("invalid", "mailbox_not_found"),
    "disabled": ("invalid", "mailbox_disabled"),
    "full": ("invalid", "mailbox_quota_exceeded"),
}


def verdict(world: World, email: str) -> tuple[str, str]:
    """EmailVerify.io's ``(status, sub_status)`` for an address of this world."""
    truth = world.truth_for_address(email) if ADDRESS_SHAPE.fullmatch(email.strip()) else None
    if truth is None:
        return NOT_AN_ADDRESS
    if truth.substatus == "hard_bounce_history":
        answer = MAILBOX_ANSWERS[world.mailbox_state(email)]
        local = normalize_address(email).rpartition("@")[0]
        return (
            ("role_based", "role_based")
            if answer[0] == "valid" and local in ROLE_MAILBOXES
            else answer
        )
    if truth.status == "Disposable":
        return ANSWERS[("Disposable", "disposable_domain")]
    return ANSWERS.get((truth.status, truth.substatus), ("unknown", "mail_server_did_not_respond"))


class EmailVerifyApi:
    def __init__(self, world: World, obs: Observatory) -> None:
        self.world = world
        self.obs = obs

    def key_ok(self, request: web.Request) -> bool:
        return secrets.compare_digest(
            request.query.get("key", ""), self.world.keys.emailverify_api_key
        )

    async def validate(self, request: web.Request) -> web.Response:
        if not self.key_ok(request):
            return json_response({"error": "Invalid API Key"}, status=401)
        email = request.query.get("email")
        if not email:
            return json_response({"error": "Invalid Request"}, status=400)
        faults = self.obs.faults
        if faults.emailverify_credits is not None and faults.emailverify_credits <= 0:
            return json_response({"error": "0 credits remaining"}, status=402)
        status, sub_status = verdict(self.world, email)
        if faults.emailverify_credits is not None and status != "unknown":
            faults.emailverify_credits -= 1
        return json_response({"email": email, "status": status, "sub_status": sub_status})

    async def balance(self, request: web.Request) -> web.Response:
        if not self.key_ok(request):
            return json_response({"error": "Invalid API Key"}, status=401)
        credits = self.obs.faults.emailverify_credits
        return json_response(
            {
                "api_status": "enabled",
                "available_credits": UNLIMITED_CREDITS if credits is None else max(credits, 0),
            }
        )


def build_emailverify_api(world: World, obs: Observatory) -> web.Application:
    api = EmailVerifyApi(world, obs)
    app = web.Application(
        middlewares=[
            count_middleware(obs, "emailverify"),
            json_errors_middleware(lambda detail, status: {"error": detail}),
        ]
    )
    app.router.add_get("/api/v1/validate", api.validate)
    app.router.add_get("/api/v2/check-account-balance", api.balance)
    return app
