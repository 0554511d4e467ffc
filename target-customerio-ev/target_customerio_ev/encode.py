"""Wire formats of one Person write: a Pipelines `identify` call or a Track v2 `person` item.

Each message is encoded once; its byte length is what the size limits count and the request body is
the encoded messages joined, so nothing is serialized twice.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .identify import Write

_ENCODER = msgspec.json.Encoder(decimal_format="number")


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


def track_person(write: Write, *, update_only: bool) -> dict[str, Any]:
    attributes = {**write.traits, "_update": True} if update_only else write.traits
    return {
        "type": "person",
        "action": "identify",
        "identifiers": {write.identifier.kind: write.identifier.value},
        "attributes": attributes,
    }


def encode(message: dict[str, Any]) -> bytes:
    return _ENCODER.encode(message)


def batch_body(parts: list[bytes]) -> bytes:
    return b'{"batch":[' + b",".join(parts) + b"]}"


BATCH_OVERHEAD = len(batch_body([]))
