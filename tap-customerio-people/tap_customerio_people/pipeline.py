"""Overlap slow, independent requests while keeping their results in a deterministic order.

The search cursor is inherently sequential, but each of its pages fans out into independent
attribute requests. A background thread walks the cursor and submits each chunk to a thread pool as
soon as the page arrives; the caller receives the chunks' results in submission order. With 200 ms
of latency and a 10 req/s budget, this keeps the budget busy, where one-request-at-a-time would use
half of it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_POLL_SECONDS = 0.1


@dataclass
class _Failed:
    error: BaseException


_DONE = object()


class _Feeder(Generic[T, R]):
    """Walks ``produce`` in its own thread; queues a future per item, in order, back-pressured."""

    def __init__(
        self,
        produce: Iterable[T],
        work: Callable[[T], R],
        pool: ThreadPoolExecutor,
        pending: queue.Queue[object],
        cancelled: threading.Event,
    ) -> None:
        self.produce, self.work, self.pool = produce, work, pool
        self.pending, self.cancelled = pending, cancelled
        self.thread = threading.Thread(target=self.run, name="cio-search", daemon=True)

    def run(self) -> None:
        try:
            for item in self.produce:
                if self.cancelled.is_set():
                    return
                if not self.put(self.pool.submit(self.work, item)):
                    return
            self.put(_DONE)
        except BaseException as exc:
            self.put(_Failed(exc))

    def put(self, entry: object) -> bool:
        while not self.cancelled.is_set():
            try:
                self.pending.put(entry, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False


def run_ahead(
    produce: Iterable[T],
    work: Callable[[T], R],
    *,
    workers: int,
    max_pending: int,
    cancelled: threading.Event,
) -> Iterator[R]:
    """Yield ``work(item)`` for every item of ``produce``, in order, up to ``workers`` at once.

    ``produce`` runs in a background thread and may block on I/O; at most ``max_pending`` items are
    queued ahead of the consumer. When the consumer stops early or anything fails, ``cancelled`` is
    set so that the producer and in-flight work stand down; the first error is re-raised here.
    """
    pending: queue.Queue[object] = queue.Queue(maxsize=max_pending)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cio-hydrate")
    feeder = _Feeder(produce, work, pool, pending, cancelled)
    feeder.thread.start()
    try:
        while True:
            entry = pending.get()
            if entry is _DONE:
                break
            if isinstance(entry, _Failed):
                raise entry.error
            assert isinstance(entry, Future)
            yield entry.result()
    finally:
        cancelled.set()
        # Free the feeder if it is blocked on a full queue, and drop work not yet started.
        while True:
            try:
                entry = pending.get_nowait()
            except queue.Empty:
                break
            if isinstance(entry, Future):
                entry.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
        feeder.thread.join(timeout=5)
