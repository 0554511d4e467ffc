"""The whole job: People per second for `meltano run` with everything cached but 5 % new
addresses, and the peak memory of each process.

A sandbox World of N People (default 100,000). Before the timed run, the mapper's cache
(`cache_path`, written with the mapper's own `verdict_cache` API, so hashed keys and the real file
format) holds a verdict for 95 % of the addresses; the other 5 % (every 20th Person) are new and are
verified for real against the sandbox's DNS and SMTP servers. Then
`meltano run tap-customerio-people emailverify target-customerio-ev` runs in the `sandbox`
environment of the repository's `meltano.yml` (as `cio-sandbox demo` drives it: settings from env
vars), with `--full-refresh --no-state-update` so it neither reads nor moves the project's own
state. The App API keeps its 10 req/s limit, so the tap's ceiling (about 909 People/s, see
bench_tap.py) bounds the job: the figure is People/s over the wall-clock of the `meltano run`
process (meltano's own start-up included) and its fraction of that ceiling. A psutil poller keeps
each process's peak resident memory (meltano and the three plugins).

`--big` (not in `make bench`: about 10 minutes) repeats it over 1,000,000 People for the memory
figure, with the sandbox's rate limit off and the tap allowed 1000 req/s, since at 10 req/s a
million People take 18 minutes.
`--piped` runs the three executables piped by `cio_sandbox.pipeline.run_piped` instead of meltano.

    .venv/bin/python benchmarks/bench_job.py [--quick | --big] [--people N] [--piped]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    PeakRss,
    app_requests,
    cached_share,
    landing_requests,
    pipelines_calls,
    seed_cache,
)
from bench_tap import ceiling
from cio_sandbox import Sandbox, World
from cio_sandbox.demo import JOB, meltano_env, project_root
from cio_sandbox.pipeline import run_piped
from cio_sandbox.report import evaluate

NEW_EVERY = 20  # one address in 20 is not in the cache: 5 % new
RATE_LIMIT = 10
MEMORY_GOAL_MB = 250
DEFAULT_PEOPLE, QUICK_PEOPLE, BIG_PEOPLE = 100_000, 2_000, 1_000_000
MELTANO = Path(sys.executable).parent / "meltano"


def run_meltano(
    sb: Sandbox, work: Path, cache: Path, report: Path, fast: bool
) -> tuple[float, str]:
    """One `meltano run` of the job; returns its wall-clock seconds and the tail of its log."""
    root = project_root()
    env = meltano_env(sb, report)
    env["MAPPER_EMAILVERIFY_CACHE_PATH"] = str(cache)
    env["TARGET_CUSTOMERIO_EV_DEAD_LETTER_PATH"] = str(work / "dead-letter.jsonl")
    if fast:
        env["TAP_CUSTOMERIO_PEOPLE_REQUESTS_PER_SECOND"] = "1000"
    log = work / "meltano.log"
    with log.open("w") as handle:  # plugins into .meltano/ (a no-op when installed), not timed
        subprocess.run(
            [str(MELTANO), "install"],
            cwd=root,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            check=True,
        )
    cmd = [str(MELTANO), "run", "--no-install", "--full-refresh", "--no-state-update", *JOB[1:]]
    started = time.perf_counter()
    with log.open("a") as handle:
        proc = subprocess.run(
            cmd, cwd=root, env=env, stdout=handle, stderr=subprocess.STDOUT, check=False
        )
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-30:])
        raise RuntimeError(f"meltano run failed (exit {proc.returncode}); log {log}:\n{tail}")
    return seconds, ""


def run_pipe(sb: Sandbox, work: Path, report: Path, fast: bool) -> float:
    started = time.perf_counter()
    piped = run_piped(
        sb,
        work,
        tap={"requests_per_second": 1000 if fast else RATE_LIMIT},
        mapper={"report_path": str(report)},
        timeout=3600,
    )
    seconds = time.perf_counter() - started
    if not piped.ok:
        raise RuntimeError(
            f"piped run failed: {piped.returncodes}: "
            f"{ {k: v[-1500:] for k, v in piped.logs.items()} }"
        )
    return seconds


def measure(
    people: int, *, via: str = "meltano", fast: bool = False, seed: int = 5
) -> dict[str, Any]:
    world = World(seed=seed, people=people)
    with tempfile.TemporaryDirectory(prefix="bench-job-") as tmp:
        work = Path(tmp)
        cache = work / "cache.sqlite"  # run_piped's default cache_path in `work`
        started = time.perf_counter()
        verdicts, new = cached_share(world, NEW_EVERY)
        seed_cache(cache, verdicts)
        seed_seconds = time.perf_counter() - started
        report = work / "mapper-report.json"
        with Sandbox(world) as sb:
            sb.obs.faults.app_rate_limit = 0 if fast else RATE_LIMIT
            with PeakRss() as memory:
                if via == "meltano":
                    seconds, _ = run_meltano(sb, work, cache, report, fast)
                else:
                    seconds = run_pipe(sb, work, report, fast)
            snapshot = sb.obs.snapshot()
            scored = evaluate(world, sb.obs.landed_copy(), sb.obs.writes)
        logs = [work / "meltano.log", work / "target-customerio-ev.log"]
        target_log = "".join(p.read_text(errors="replace") for p in logs if p.exists())
        mapper = json.loads(report.read_text()) if report.exists() else {}
    rate = people / seconds
    peaks = memory.megabytes()
    plugin_peaks = {k: v for k, v in peaks.items() if k != "meltano"}
    return {
        "people": people,
        "via": via,
        "rate_limit_rps": 0 if fast else RATE_LIMIT,
        "seconds": round(seconds, 1),
        "people_per_second": round(rate, 1),
        "tap_ceiling_people_per_second": None if fast else round(ceiling(RATE_LIMIT), 1),
        "fraction_of_tap_ceiling": None if fast else round(rate / ceiling(RATE_LIMIT), 3),
        "addresses_cached": len(verdicts),
        "addresses_new": new,
        "mapper_verdict_sources": mapper.get("by_source"),
        "smtp_connections": snapshot["smtp_connections"],
        "app_api_requests": app_requests(snapshot),
        "landing_check_requests": landing_requests(snapshot, target_log),
        "rate_limited_429": snapshot["rate_limited"].get("app", 0),
        "pipelines_calls": pipelines_calls(snapshot),
        "identifies_landed": snapshot["writes"],
        "coverage": round(scored.coverage, 4),
        "accuracy": round(scored.accuracy, 4),
        "false_invalid": scored.false_invalid,
        "peak_rss_mb": peaks,
        "max_plugin_rss_mb": max(plugin_peaks.values(), default=None),
        "cache_seed_seconds": round(seed_seconds, 1),
    }


def run(quick: bool = False, big: bool = False) -> dict[str, Any]:
    """The suite's entry: the 100,000-People job through meltano (2,000 when quick); `big` adds
    1,000,000."""
    job = measure(QUICK_PEOPLE if quick else DEFAULT_PEOPLE)
    result: dict[str, Any] = {
        "benchmark": "job",
        "new_address_share": 1 / NEW_EVERY,
        "memory_goal_mb": MEMORY_GOAL_MB,
        "job": job,
        "people_per_second": job["people_per_second"],
        "fraction_of_tap_ceiling": job["fraction_of_tap_ceiling"],
        "max_plugin_rss_mb": job["max_plugin_rss_mb"],
    }
    if big:
        result["big"] = measure(BIG_PEOPLE, fast=True)
        result["max_plugin_rss_mb_big"] = result["big"]["max_plugin_rss_mb"]
    return result


def main() -> None:
    # The docstring's first paragraph (argparse refills it), not just its first wrapped line.
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_PEOPLE} People")
    parser.add_argument(
        "--big", action="store_true", help=f"also {BIG_PEOPLE:,} People (memory; no rate limit)"
    )
    parser.add_argument("--people", type=int, help="just one run over this many People")
    parser.add_argument(
        "--fast", action="store_true", help="with --people: rate limit off, tap at 1000 req/s"
    )
    parser.add_argument("--piped", action="store_true", help="run_piped instead of meltano run")
    args = parser.parse_args()
    if args.people:
        result = measure(args.people, via="piped" if args.piped else "meltano", fast=args.fast)
    else:
        result = run(args.quick, args.big)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
