"""Counters of one run (requests, 429s, retries), shared by every thread, logged after a stream.

`RunStats` is the same in every plugin (CONTRIBUTING.md, "Conventions").
"""

from __future__ import annotations

import threading
from collections import Counter


class RunStats:
    """A thread-safe counter; the numbers a user (or a benchmark) wants after a run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._counts[name]
