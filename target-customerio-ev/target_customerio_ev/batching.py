"""Messages as bytes, and batch requests packed from them under the API's size limits.

Each message is encoded once; its byte length is what the size limits count, and the request body
is the encoded messages joined (`{"batch":[a,b,...]}`, the same envelope for Pipelines and Track
v2), so nothing is serialized twice.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import msgspec

T = TypeVar("T")

_ENCODER = msgspec.json.Encoder(decimal_format="number")


def encode(message: dict[str, Any]) -> bytes:
    return _ENCODER.encode(message)


def batch_body(parts: list[bytes]) -> bytes:
    return b'{"batch":[' + b",".join(parts) + b"]}"


BATCH_OVERHEAD = len(batch_body([]))


def pack(
    items: Sequence[tuple[T, bytes]], *, max_bytes: int, max_messages: int
) -> Iterator[list[tuple[T, bytes]]]:
    """Greedy, order-preserving chunks whose body (`{"batch":[a,b,...]}`) is at most max_bytes.

    Every item must already fit alone (callers dead-letter larger ones first).
    """
    chunk: list[tuple[T, bytes]] = []
    size = BATCH_OVERHEAD
    for item in items:
        extra = len(item[1]) + (1 if chunk else 0)  # the comma
        if chunk and (size + extra > max_bytes or len(chunk) >= max_messages):
            yield chunk
            chunk, size, extra = [], BATCH_OVERHEAD, len(item[1])
        if BATCH_OVERHEAD + len(item[1]) > max_bytes:
            raise ValueError("an item larger than max_bytes reached pack()")
        chunk.append(item)
        size += extra
    if chunk:
        yield chunk
