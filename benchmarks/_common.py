"""What the whole-job benchmarks share: peak memory of each plugin process, and a pre-filled
mapper cache.

Running the pipeline itself and scoring it stay in `cio_sandbox.pipeline` and `cio_sandbox.report`.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil
from cio_sandbox import World

PLUGINS = ("tap-customerio-people", "mapper-emailverify", "target-customerio-ev", "meltano")
MB = 1024 * 1024


def process_label(proc: psutil.Process) -> str | None:
    """Which plugin (or meltano itself) a child process is: the console script on its command
    line."""
    try:
        args = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    for arg in args[:2]:  # `python /venv/bin/<script> ...` or `/venv/bin/<script> ...`
        name = os.path.basename(arg)
        if name in PLUGINS:
            return name
    return None


class PeakRss:
    """Samples the resident memory of every plugin process below this one, keeping each label's
    peak.

    Polls with psutil (every `interval` seconds) rather than reading ru_maxrss, because the
    plugins may be grandchildren (under `meltano run`) and each one's own peak is wanted, not the
    largest child's.
    """

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peaks: dict[str, int] = {}
        self._root = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="peak-rss", daemon=True)
        self._labels: dict[int, str | None] = {}

    def _sample(self) -> None:
        for proc in self._root.children(recursive=True):
            if proc.pid not in self._labels:
                self._labels[proc.pid] = process_label(proc)
            label = self._labels[proc.pid]
            if label is None:
                continue
            try:
                rss = proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            self.peaks[label] = max(self.peaks.get(label, 0), rss)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def megabytes(self) -> dict[str, float]:
        return {label: round(rss / MB, 1) for label, rss in sorted(self.peaks.items())}


def cached_share(world: World, new_every: int) -> tuple[list[tuple[str, str, str]], int]:
    """Verdicts (address, status, substatus) for every address but one in `new_every` (those are
    'new').

    Returns the verdicts to pre-seed and how many addresses were left out of them.
    """
    verdicts, new = [], 0
    for person in world.iter_people():
        if not (isinstance(person.email, str) and person.email.strip()):
            continue
        if person.index % new_every == 0:
            new += 1
        else:
            verdicts.append((person.email, person.truth.status, person.truth.substatus))
    return verdicts, new


def seed_cache(path: Path, verdicts: Iterable[tuple[str, str, str]], ttl_days: float = 30) -> None:
    """Write verdicts with the mapper's own cache API (hashed keys, the same file format as a real
    run)."""
    from mapper_emailverify.stream_map.verdict_cache import SqliteResultsCache, Verdict, address_key

    cache = SqliteResultsCache(path, ttl_days=ttl_days)
    now = time.time()
    for address, status, substatus in verdicts:
        cache.put(address_key(address), Verdict(status, substatus, now))
    cache.close()


def app_requests(snapshot: dict[str, Any]) -> int:
    return sum(n for (service, _), n in snapshot["requests"].items() if service == "app")


#: The landing check's single-Person reads; nothing else in the job asks this endpoint. Its batch
#: reads share `POST /v1/customers/attributes` with the tap's hydration, so the target's own count
#: line (`LANDING_LINE`) is what tells them apart.
LANDING_ENDPOINT = ("app", "GET /v1/customers/{customer_id}/attributes")
LANDING_LINE = re.compile(r"Landing check: App API requests (\d+)")


def landing_requests(snapshot: dict[str, Any], target_log: str | None = None) -> int:
    """App API requests made by the target's landing check (part of `app_requests`): from the
    target's log line when there is one, else the single-Person endpoint's counter."""
    found = LANDING_LINE.findall(target_log or "")
    if found:
        return int(found[-1])
    return int(snapshot["requests"].get(LANDING_ENDPOINT, 0))


def pipelines_calls(snapshot: dict[str, Any]) -> int:
    return sum(n for (service, _), n in snapshot["requests"].items() if service == "pipelines")
