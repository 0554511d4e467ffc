"""Split encoded messages into batch requests that stay under the API's size limits."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

from .encode import BATCH_OVERHEAD

T = TypeVar("T")


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
