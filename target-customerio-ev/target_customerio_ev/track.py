"""The Track API v2 dialect: `POST /api/v2/batch` of `person` items (`_update: true` when asked).

Auth is the site id and API key over HTTP Basic; a 207 (or 400) names bad items by `batch_index`.
"""

from __future__ import annotations

from typing import Any

from typing_extensions import override

from .identify import Write
from .rejections import Verdict
from .sender import BatchSender


def track_person(write: Write, *, update_only: bool) -> dict[str, Any]:
    attributes = {**write.traits, "_update": True} if update_only else write.traits
    return {
        "type": "person",
        "action": "identify",
        "identifiers": {write.identifier.kind: write.identifier.value},
        "attributes": attributes,
    }


def rejected_people(status: int, body: Any, size: int) -> dict[int, str] | None:
    """The items a 207 or 400 names (`{"errors": [{"batch_index": 3, ...}]}`), or None."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if status not in (207, 400) or not isinstance(errors, list):
        return None
    named: dict[int, str] = {}
    for error in errors:
        index = error.get("batch_index") if isinstance(error, dict) else None
        if not isinstance(index, int) or not 0 <= index < size:
            return None
        detail = ", ".join(str(error[k]) for k in ("reason", "field", "message") if error.get(k))
        named[index] = (
            named.get(index, "") + ("; " if index in named else "") + (detail or "rejected")
        )
    return named or None


class TrackSender(BatchSender):
    path = "/api/v2/batch"
    api_name = "Track"

    @property
    @override
    def update_only(self) -> bool:
        return self.settings.update_only

    @override
    def auth(self) -> tuple[str, str]:
        return (self.settings.track_site_id, self.settings.track_api_key)

    @override
    def to_message(self, write: Write) -> dict[str, Any]:
        return track_person(write, update_only=self.settings.update_only)

    @override
    def unauthorized(self, status: int) -> str:
        return (
            f"Customer.io Track API refused the credentials (HTTP {status}): check track_site_id "
            f"and track_api_key (Track API, not the App API or Pipelines key) and that region "
            f"'{self.settings.region}' matches the workspace."
        )

    @override
    def rejected_items(self, status: int, body: Any, size: int) -> dict[int, str] | None:
        return rejected_people(status, body, size)

    @override
    def rejection_hint(self, verdict: Verdict) -> str:
        if 413 in verdict.statuses:
            return "lower max_batch_bytes (a proxy in front of Customer.io may allow less)."
        if verdict.kind == "email":
            return "email must be an identifier of the workspace (Track identifiers.email)."
        return (
            "check traits and identify_by, and that track_site_id and track_api_key belong to "
            "the workspace."
        )
