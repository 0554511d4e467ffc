"""The Pipelines (CDP) API dialect: `POST /v1/batch` of `identify` calls, in strict mode.

Auth is the source's write key as the HTTP Basic user; a 400 names bad calls as `batch[3]: ...`.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from typing_extensions import override

from .identify import Write
from .sender import BatchSender

_INDEX = re.compile(r"batch\[(\d+)\]")


def pipelines_identify(write: Write) -> dict[str, Any]:
    """Email-only People go as an empty userId plus traits.email (documented Pipelines usage)."""
    who = write.identifier
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
        return pipelines_identify(write)

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
