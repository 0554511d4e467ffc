"""Counters of one run that are not verdicts (records passed through, bounces seen, cache write
failures), shared by the reader and engine threads. The same `RunStats` as the tap's and the
target's (CONTRIBUTING.md, "Conventions"); verdicts are tallied by `progress.Progress`."""

from __future__ import annotations

import threading
from collections import Counter


class RunStats:
    """A thread-safe counter of named events."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
