"""What a long run tells its operator: one progress line every `log_every` seconds (records done
of the total the tap announced, the recent rate, the time left, counts by status; never an
address), a last one at the end, a summary table, and the same figures as JSON in `report_path`
(and as a page in `report_html_path`, drawn by `report/`): counts by status, Unknowns explained,
the domains with the most Invalids and the catch-all domains (`domain_tally`), and the records
done over time (throughput samples).

Counters are written without locks: the reader thread and the engine thread each own one `Counter`,
and readers of the figures add them up.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mapper_emailverify.engine.explain import Explanation, advice_for, explain
from mapper_emailverify.report.output import write_atomically
from mapper_emailverify.stream_map.domain_tally import DomainTally, top
from mapper_emailverify.stream_map.stats import RunStats
from mapper_emailverify.taxonomy import Status

#: Where a verdict came from: `fresh` (carried by the record), `cache`, `engine` (verified now),
#: `local` (no address or not a string: no engine needed), `kept` (the re-check ended in a
#: transient Unknown, so the record keeps its earlier definite verdict).
SOURCES = ("fresh", "cache", "engine", "local", "kept")

#: Distinct (provider, cause) groups kept; beyond, a new group is folded into its cause's "other"
#: provider. Providers and causes are fixed short lists, so this bound is never met in practice.
MAX_UNKNOWN_GROUPS = 200

#: What the engine gives when it raised instead of answering (the engine thread passes None).
NO_RESULT = Explanation(
    "other",
    "other",
    "the engine raised instead of answering (an internal error; the DEBUG log shows it)",
    advice_for("other", "other"),
)

#: The engine's counters the summary's "SMTP:" line reads, in its order, with their words.
SMTP_COUNTERS = (
    ("greylisted", "greylisted"),
    ("greylist_resolved", "resolved on retry"),
    ("catch_all_probes", "catch-all probes"),
    ("catch_all_skipped", "skipped by provider rule"),
    ("catch_all_cached", "known from the domain cache"),
)


#: Throughput samples (elapsed seconds, records done, verifications): one every `SAMPLE_EVERY`
#: seconds at first; when `MAX_SAMPLES` are kept, every other one is dropped and the interval
#: doubles, so a run of any length keeps at most `MAX_SAMPLES` evenly spaced points.
SAMPLE_EVERY = 1.0
MAX_SAMPLES = 240

#: The progress line's rate is the pace over about this many seconds, so that a tap's listing
#: (no record for a while) or a slow start does not distort the time left for the rest of the run.
RATE_WINDOW = 60.0
#: The key of a SCHEMA message announcing how many records of its stream follow (the tap's README,
#: "Progress"): an extra key that Singer targets ignore.
EXPECTED_RECORD_COUNT = "expected_record_count"


def expected_count(message: Mapping[str, Any]) -> int | None:
    """A SCHEMA message's announced record count; None when absent or not a count."""
    value = message.get(EXPECTED_RECORD_COUNT)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def format_duration(seconds: float) -> str:
    """ "42 s", "1 min 10 s", "1 h 05 min": what a person reads at a glance."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def _rate(per_second: float) -> str:
    return f"{per_second:,.0f}/s" if per_second >= 10 else f"{per_second:.1f}/s"


class Progress:
    def __init__(
        self,
        logger: logging.Logger,
        log_every: float = 10.0,
        stats: RunStats | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`log_every`: seconds between progress lines (0: only the last one)."""
        self.logger = logger
        self.log_every = log_every
        self._clock = clock
        self.started = clock()
        #: Records each verified stream's SCHEMA announced (None: that stream announced none).
        self._expected: dict[str, int | None] = {}
        #: (time, records done) at each progress line within `RATE_WINDOW`, for the recent rate.
        self._paces: deque[tuple[float, int]] = deque([(self.started, 0)])
        #: `passthrough_records` (streams without the email field) and `hard_bounces_seen`.
        self.stats = stats if stats is not None else RunStats()
        self._reader: Counter[tuple[str, str, str]] = Counter()
        self._engine: Counter[tuple[str, str, str]] = Counter()
        self._rules: Counter[str] = Counter()  # engine verdicts by the kind of rule (engine thread)
        #: Engine Unknowns by (provider, cause), and the first example and advice of each group
        #: (engine thread).
        self._unknowns: Counter[tuple[str, str]] = Counter()
        self._unknown_first: dict[tuple[str, str], tuple[str, str]] = {}
        #: The engine's own counters (`Verifier.counters`), when the caller wires them in.
        self.engine_counters: Callable[[], Mapping[str, int]] | None = None
        self._last_log = self.started
        #: Invalid and Catch-All verdicts by the address's domain: the reader thread's tallies
        #: and the engine thread's, by status.
        tallied = (str(Status.INVALID), str(Status.CATCH_ALL))
        self._reader_domains = {status: DomainTally() for status in tallied}
        self._engine_domains = {status: DomainTally() for status in tallied}
        self.sample_every = SAMPLE_EVERY
        self._samples: list[tuple[float, int, int]] = [(0.0, 0, 0)]  # the ticker thread's
        self._next_sample = self.started + self.sample_every

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

    def count_domain(self, status: str, address: str) -> None:
        """From the reader thread: an Invalid or Catch-All verdict, counted by the address's
        domain (other statuses are not tallied)."""
        tally = self._reader_domains.get(status)
        if tally is not None:
            tally.add(address)

    def count_engine_domain(self, status: str, address: str) -> None:
        """From the engine thread: as `count_domain`."""
        tally = self._engine_domains.get(status)
        if tally is not None:
            tally.add(address)

    def maybe_sample(self) -> None:
        """From the ticker: one throughput sample when the interval is up (bounded, see
        `MAX_SAMPLES`)."""
        now = self._clock()
        if now < self._next_sample:
            return
        totals = self._totals()
        verified = sum(n for (source, *_), n in totals.items() if source == "engine")
        samples = [*self._samples, (round(now - self.started, 3), sum(totals.values()), verified)]
        if len(samples) >= MAX_SAMPLES:
            samples = samples[::2]
            self.sample_every *= 2
        self._samples = samples
        self._next_sample = self.started + samples[-1][0] + self.sample_every

    def _throughput(self, elapsed: float, done: int, verified: int) -> dict[str, Any]:
        samples = [*self._samples, (round(elapsed, 3), done, verified)]
        return {
            "interval_seconds": self.sample_every,
            "samples": [
                {"seconds": seconds, "records": records, "verified": checked}
                for seconds, records, checked in samples
            ],
        }

    def _domains(self) -> dict[str, Any]:
        tallies = [*self._reader_domains.items(), *self._engine_domains.items()]
        return {
            "invalid": top(t for s, t in tallies if s == Status.INVALID),
            "catch_all": top(t for s, t in tallies if s == Status.CATCH_ALL),
            "counts_exact": not any(tally.pruned for _, tally in tallies),
        }

    def explain(self, result: object) -> None:
        """From the engine thread: an engine Unknown, grouped by provider and cause."""
        try:
            found = NO_RESULT if result is None else explain(result)
        except Exception:  # explaining must never cost a verdict; explain() is meant not to raise
            found = NO_RESULT
        if found is None:  # not an Unknown after all
            return
        group = (found.provider, found.cause)
        if group not in self._unknown_first:
            if len(self._unknown_first) >= MAX_UNKNOWN_GROUPS:
                group = ("other", found.cause)
            # The example goes in before the count: a reader never sees a count without it.
            self._unknown_first.setdefault(group, (found.example, found.advice))
        self._unknowns[group] += 1

    def _unknown_groups(self) -> list[dict[str, Any]]:
        counts = Counter(dict.copy(self._unknowns))
        first = dict.copy(self._unknown_first)
        groups = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return [
            {
                "provider": provider,
                "cause": cause,
                "count": n,
                "example": first.get((provider, cause), ("", ""))[0],
                "advice": first.get((provider, cause), ("", ""))[1],
            }
            for (provider, cause), n in groups
        ]

    def _engine_counters(self) -> dict[str, int] | None:
        if self.engine_counters is None:
            return None
        try:
            return {str(name): int(n) for name, n in dict(self.engine_counters()).items()}
        except Exception:  # a report without the SMTP figures beats no report
            return {}

    def _totals(self) -> Counter[tuple[str, str, str]]:
        # dict.copy runs in C under the GIL: a consistent copy while the other thread keeps
        # counting.
        return Counter(dict.copy(self._reader)) + Counter(dict.copy(self._engine))

    def snapshot(self) -> dict[str, Any]:
        totals = self._totals()
        elapsed = max(self._clock() - self.started, 1e-9)
        by_status: Counter[str] = Counter()
        by_pair: dict[str, Counter[str]] = {}
        by_source: Counter[str] = Counter()
        for (source, status, substatus), n in totals.items():
            by_status[status] += n
            by_pair.setdefault(status, Counter())[substatus] += n
            by_source[source] += n
        verified = by_source["engine"]
        smtp = self._engine_counters()
        snap = {
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
            "unknowns": self._unknown_groups(),
            "domains": self._domains(),
            "throughput": self._throughput(elapsed, sum(by_status.values()), verified),
        }
        if smtp is not None:
            snap["smtp"] = smtp
        return snap

    def expect(self, stream: str, count: int | None) -> None:
        """A verified stream's SCHEMA said how many records follow (None: it did not say)."""
        self._expected[stream] = count

    @property
    def expected(self) -> int | None:
        """Records the verified streams announced in all; None unless every one announced."""
        counts = list(self._expected.values())
        if not counts or any(count is None for count in counts):
            return None
        return sum(count for count in counts if count is not None)

    def maybe_log(self) -> None:
        """From the ticker: one progress line when `log_every` is up."""
        now = self._clock()
        if self.log_every <= 0 or now - self._last_log < self.log_every:
            return
        self._last_log = now
        done, statuses = self._done()
        paces = self._paces
        while len(paces) > 1 and now - paces[0][0] > RATE_WINDOW:
            paces.popleft()
        since, done_then = paces[0]
        paces.append((now, done))
        rate = (done - done_then) / max(now - since, 1e-9)
        left = ""
        total = self.expected
        if total is not None and total > done and rate > 0:
            left = f", about {format_duration((total - done) / rate)} left"
        self.logger.info("%s", self._line(done, total, _rate(rate) + left, statuses))

    def log_final(self) -> None:
        """The last progress line: what was done in all, and how fast."""
        elapsed = max(self._clock() - self.started, 1e-9)
        done, statuses = self._done()
        pace = f"{_rate(done / elapsed)}, done in {format_duration(elapsed)}"
        self.logger.info("%s", self._line(done, self.expected, pace, statuses))

    def _done(self) -> tuple[int, Counter[str]]:
        statuses: Counter[str] = Counter()
        for (_, status, _), n in self._totals().items():
            statuses[status] += n
        return sum(statuses.values()), statuses

    @staticmethod
    def _line(done: int, total: int | None, pace: str, statuses: Counter[str]) -> str:
        """ "Progress: 500 of 3,000 records (17%), 50/s, about 50 s left; Valid 400, ..."; without
        a total, "Progress: 500 records, 50/s; ...". Counts only: no address, no domain."""
        if total is None:
            head = f"Progress: {done:,} records"
        else:
            share = min(100, round(100 * done / total)) if total else 100
            head = f"Progress: {done:,} of {total:,} records ({share}%)"
        counts = ", ".join(f"{status} {statuses[str(status)]}" for status in Status)
        return f"{head}, {pace}; {counts}"

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
        lines += _unknown_lines(snap["unknowns"])
        smtp_line = _smtp_line(snap.get("smtp") or {})
        if smtp_line:
            lines.append(smtp_line)
        return "\n".join(lines)

    def log_summary(self) -> None:
        self.logger.info("Verification summary:\n%s", self.summary_table())

    def report(self, *, interrupted: bool = False) -> dict[str, Any]:
        """What `report_path` holds (and `report_html_path` draws)."""
        finished = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        return {**self.snapshot(), "completed": not interrupted, "finished_at": finished}

    def write_report(
        self, path: str | Path, *, interrupted: bool = False, report: dict[str, Any] | None = None
    ) -> None:
        report = report if report is not None else self.report(interrupted=interrupted)
        write_atomically(Path(path), json.dumps(report, indent=2, sort_keys=False) + "\n")


def _unknown_lines(groups: list[dict[str, Any]]) -> list[str]:
    """ "Unknowns by provider and cause:", then one line per group (the report's `unknowns`)."""
    if not groups:
        return []
    provider_width = max(len(group["provider"]) for group in groups)
    cause_width = max(len(group["cause"]) for group in groups)
    return [
        "Unknowns by provider and cause:",
        *(
            f"{group['count']:>9}  {group['provider']:<{provider_width}}  "
            f'{group["cause"]:<{cause_width}}  e.g. "{group["example"]}"; {group["advice"]}'
            for group in groups
        ),
    ]


def _smtp_line(counters: Mapping[str, int]) -> str:
    """ "SMTP: greylisted 12, resolved on retry 11; catch-all probes 40 (skipped by provider rule
    25, known from the domain cache 30)": the known counters that are present, "" for none."""
    words = dict(SMTP_COUNTERS)
    shown = {name: f"{words[name]} {counters[name]}" for name in words if name in counters}
    parts = []
    greylist = [shown[name] for name in ("greylisted", "greylist_resolved") if name in shown]
    if greylist:
        parts.append(", ".join(greylist))
    extras = [shown[name] for name in ("catch_all_skipped", "catch_all_cached") if name in shown]
    if "catch_all_probes" in shown:
        parts.append(shown["catch_all_probes"] + (f" ({', '.join(extras)})" if extras else ""))
    elif extras:
        parts.append("catch-all probes " + ", ".join(extras))
    return f"SMTP: {'; '.join(parts)}" if parts else ""


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
