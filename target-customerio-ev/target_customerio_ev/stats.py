"""Counters of one run (shared by every sink and sender thread) and the closing summary line."""

from __future__ import annotations

import threading
from collections import Counter

FIELDS = (
    "written",
    "skipped_unchanged",
    "skipped_empty",
    "dead_lettered",
    "retries",
    "requests",
    "would_send",
)


class RunStats:
    """Thread-safe run counters: `count(name, n)`, `stats[name]`, `snapshot()`."""

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
        """Every counter of the summary (zeros included), plus any other counted so far."""
        with self._lock:
            return {**{name: 0 for name in FIELDS}, **self._counts}

    def line(self, *, dry_run: bool, landing: str = "") -> str:
        """The run's summary line; `landing` is what the landing check found (landing.py)."""
        c = self.snapshot()
        end = f"; {landing}." if landing else "."
        if dry_run:
            return (
                f"Dry run: would send {c['would_send']} identifies; skipped unchanged "
                f"{c['skipped_unchanged']}, nothing to send {c['skipped_empty']}, "
                f"dead-lettered {c['dead_lettered']}{end}"
            )
        return (
            f"Summary: written {c['written']}, skipped unchanged {c['skipped_unchanged']}, "
            f"nothing to send {c['skipped_empty']}, dead-lettered {c['dead_lettered']}, "
            f"retries {c['retries']}, requests {c['requests']}{end}"
        )
