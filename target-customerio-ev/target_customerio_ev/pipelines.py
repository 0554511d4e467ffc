"""The Pipelines (CDP) API dialect: `POST /v1/batch` of `identify` calls, in strict mode.

Auth is the source's write key as the HTTP Basic user; a 400 may name bad calls as `batch[3]: ...`
(its format is unpublished: when it names none, the sender bisects).

People without an id are addressed as `email_only_identify` says: `empty_user_id` (userId "" and
traits.email, the form the /identify prose allows "when you use Customer.io as a destination",
though the schema wants a non-empty userId or anonymousId), or `email_as_user_id` (the address as
userId, which Customer.io reads as an email by its shape). The third mode, `track`, never reaches
this sender: those People go through the Track API (`routing.py`).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from typing_extensions import override

from .identify import Write
from .rejections import Verdict
from .sender import BatchSender

_INDEX = re.compile(r"batch\[(\d+)\]")


def pipelines_identify(write: Write, email_only: str = "empty_user_id") -> dict[str, Any]:
    """One identify call; email-only People as `email_only` says (see the module's docstring)."""
    who = write.identifier
    if who.kind == "email" and email_only == "email_as_user_id":
        return {
            "type": "identify",
            "userId": who.value,
            "traits": write.traits,
            "messageId": write.message_id,
        }
    if who.kind == "email":
        return {
            "type": "identify",
            "userId": "",
            "traits": {**write.traits, "email": who.value},
            "messageId": write.message_id,
        }
    user_id = f"cio_{who.value}" if who.kind == "cio_id" else who.value
    return {
        "type": "identify",
        "userId": user_id,
        "traits": write.traits,
        "messageId": write.message_id,
    }


def rejected_calls(status: int, body: Any, size: int) -> dict[int, str] | None:
    """The calls a 400 names (`{"meta": {"errors": ["batch[3]: ..."]}}`), or None to bisect."""
    errors = (body.get("meta") or {}).get("errors") if isinstance(body, dict) else None
    if status != 400 or not isinstance(errors, list):
        return None
    named: dict[int, str] = {}
    for error in errors:
        match = _INDEX.search(str(error))
        if match is None:
            return None  # an error about the whole request: bisect instead
        index = int(match.group(1))
        if not 0 <= index < size:
            return None
        named[index] = str(error)
    return named or None


class PipelinesSender(BatchSender):
    path = "/v1/batch"
    api_name = "Pipelines"
    extra_headers: ClassVar[dict[str, str]] = {"X-Strict-Mode": "1"}

    @override
    def auth(self) -> tuple[str, str]:
        return (self.settings.pipelines_api_key, "")

    @override
    def to_message(self, write: Write) -> dict[str, Any]:
        return pipelines_identify(write, self.settings.email_only_identify)

    @override
    def unauthorized(self, status: int) -> str:
        return (
            f"Customer.io Pipelines API refused the write key (HTTP {status}): pipelines_api_key "
            f"must be the Pipelines (CDP) API write key of a 'Customer.io API' source, not an App "
            f"API or Track API key, and region '{self.settings.region}' must match the workspace."
        )

    @override
    def rejected_items(self, status: int, body: Any, size: int) -> dict[int, str] | None:
        return rejected_calls(status, body, size)

    @override
    def rejection_hint(self, verdict: Verdict) -> str:
        if verdict.kind == "email":
            if self.settings.email_only_identify == "email_as_user_id":
                return "set email_only_identify to track (Track API v2, identifiers.email)."
            return (
                "set email_only_identify to email_as_user_id or track (the Pipelines schema wants "
                "a non-empty userId; this source refuses an empty one with traits.email)."
            )
        if verdict.kind == "cio_id":
            return "Pipelines refuses the cio_ userId: set identify_by to auto or id."
        if 413 in verdict.statuses:
            return "lower max_batch_bytes (a proxy in front of Customer.io may allow less)."
        return (
            "check traits (values Customer.io refuses) and identify_by, and that "
            "pipelines_api_key is the write key of a 'Customer.io API' source."
        )
