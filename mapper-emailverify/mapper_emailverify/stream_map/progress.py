"""What a long run tells its operator: a progress line every few seconds, a summary table at the
end, and the same figures as JSON in `report_path`.

Counters are written without locks: the reader thread and the engine thread each own one `Counter`,
and readers of the figures add them up.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mapper_emailverify.stream_map.stats import RunStats
from mapper_emailverify.taxonomy import Status

#: Where a verdict came from: `fresh` (carried by the record), `cache`, `engine` (verified now),
#: `local` (no address or not a string: no engine needed), `kept` (the re-check ended in a
#: transient Unknown, so the record keeps its earlier definite verdict).
SOURCES = ("fresh", "cache", "engine", "local", "kept")


class Progress:
    def __init__(
        self, logger: logging.Logger, log_every: float = 5.0, stats: RunStats | None = None
    ) -> None:
        self.logger = logger
        self.log_every = log_every
        self.started = time.monotonic()
        #: `passthrough_records` (streams without the email field) and `hard_bounces_seen`.
        self.stats = stats if stats is not None else RunStats()
        self._reader: Counter[tuple[str, str, str]] = Counter()
        self._engine: Counter[tuple[str, str, str]] = Counter()
        self._rules: Counter[str] = Counter()  # engine verdicts by the kind of rule (engine thread)
        self._last_log = self.started
        self._last_done = 0

    def count(self, source: str, status: str, substatus: str) -> None:
        """From the reader thread."""
        self._reader[(source, status, substatus)] += 1

    def count_engine(self, status: str, substatus: str, rule: str = "engine") -> None:
        """From the engine thread."""
        self._engine[("engine", status, substatus)] += 1
        self._rules[rule] += 1

    def count_engine_kept(self, status: str, substatus: str) -> None:
        """From the engine thread: the re-check was transient, the earlier verdict stays."""
        self._engine[("kept", status, substatus)] += 1

    def _totals(self) -> Counter[tuple[str, str, str]]:
        # dict.copy runs in C under the GIL: a consistent copy while the other thread keeps
        # counting.
        return Counter(dict.copy(self._reader)) + Counter(dict.copy(self._engine))

    def snapshot(self) -> dict[str, Any]:
        totals = self._totals()
        elapsed = max(time.monotonic() - self.started, 1e-9)
        by_status: Counter[str] = Counter()
        by_pair: dict[str, Counter[str]] = {}
        by_source: Counter[str] = Counter()
        for (source, status, substatus), n in totals.items():
            by_status[status] += n
            by_pair.setdefault(status, Counter())[substatus] += n
            by_source[source] += n
        verified = by_source["engine"]
        return {
            "records": sum(by_status.values()),
            "passthrough_records": self.stats["passthrough_records"],
            "hard_bounces_seen": self.stats["hard_bounces_seen"],
            "verified": verified,
            "elapsed_seconds": round(elapsed, 3),
            "records_per_second": round(sum(by_status.values()) / elapsed, 1),
            "verifications_per_second": round(verified / elapsed, 2),
            "by_source": {source: by_source[source] for source in SOURCES},
            "by_status": {str(status): by_status[str(status)] for status in Status},
            "engine_verdicts_by_rule": dict(Counter(dict.copy(self._rules)).most_common()),
            "by_substatus": {
                status: dict(sorted(subs.items())) for status, subs in sorted(by_pair.items())
            },
        }

    def maybe_log(self) -> None:
        now = time.monotonic()
        if now - self._last_log < self.log_every:
            return
        totals = self._totals()
        done = sum(totals.values())
        verified = sum(n for (source, *_), n in totals.items() if source == "engine")
        rate = (done - self._last_done) / (now - self._last_log)
        statuses: Counter[str] = Counter()
        for (_, status, _), n in totals.items():
            statuses[status] += n
        self._last_log, self._last_done = now, done
        self.logger.info(
            "Progress: %d records done (%.0f/s now), %d verifications (%.1f/s overall); %s",
            done,
            rate,
            verified,
            verified / max(now - self.started, 1e-9),
            ", ".join(f"{status} {statuses[str(status)]}" for status in Status),
        )

    def summary_table(self) -> str:
        snap = self.snapshot()
        rows = [
            (status, substatus, n)
            for status, subs in snap["by_substatus"].items()
            for substatus, n in subs.items()
        ]
        width = max([len("EV_Status"), *(len(r[0]) for r in rows)])
        sub_width = max([len("EV_SubStatus"), *(len(r[1]) for r in rows)])
        lines = [f"{'EV_Status':<{width}}  {'EV_SubStatus':<{sub_width}}  {'records':>9}"]
        lines.append(f"{'-' * width}  {'-' * sub_width}  {'-' * 9}")
        lines += [
            f"{status:<{width}}  {substatus:<{sub_width}}  {n:>9}" for status, substatus, n in rows
        ]
        lines.append(f"{'total':<{width}}  {'':<{sub_width}}  {snap['records']:>9}")
        sources = ", ".join(f"{k} {v}" for k, v in snap["by_source"].items())
        lines.append(
            f"sources: {sources}; {snap['verifications_per_second']} verifications/s over "
            f"{snap['elapsed_seconds']} s; {snap['passthrough_records']} records passed through"
            + (
                f"; re-check failed, earlier verdict kept: {snap['by_source']['kept']}"
                if snap["by_source"]["kept"]
                else ""
            )
        )
        return "\n".join(lines)

    def log_summary(self) -> None:
        self.logger.info("Verification summary:\n%s", self.summary_table())

    def write_report(self, path: str | Path, *, interrupted: bool = False) -> None:
        target = Path(path).expanduser()
        target.parent.mkdir(parents=True, exist_ok=True)
        report = {**self.snapshot(), "completed": not interrupted}
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        tmp.replace(target)


class Ticker:
    """A daemon thread for small periodic chores (flush output, commit the cache, log progress)."""

    def __init__(
        self, period: float, chores: list[Callable[[], None]], logger: logging.Logger
    ) -> None:
        self.period = period
        self.chores = chores
        self.logger = logger
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="emailverify-ticker", daemon=True)

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            for chore in self.chores:
                try:
                    chore()
                except BrokenPipeError:
                    self._stop.set()
                    return
                except Exception as exc:  # a chore must not kill the ticker silently
                    self.logger.warning("Periodic task failed: %s", type(exc).__name__)
