"""Cost of a re-run over unchanged People: App API requests, SMTP connections and Pipelines calls.

The job (tap | mapper | target, the three executables piped as `meltano run` pipes them, via
`cio_sandbox.pipeline.run_piped`) runs twice on one sandbox with one mapper cache. The sandbox's
App API reads back what the first run landed, so on the second run every Person already carries
fresh `EV_*` attributes. The sandbox's traffic counters are reset between the runs (what landed is
kept) and read after the second. Goals: SMTP 0, Pipelines 0; the App API requests are what reading
the workspace costs (one search page and ten attribute batches per 1000 People, plus segments and
suppressions), which nothing can avoid.

    .venv/bin/python benchmarks/bench_rerun.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import app_requests, pipelines_calls
from cio_sandbox import Sandbox, World
from cio_sandbox.pipeline import run_piped
from cio_sandbox.report import evaluate

# The tap's request budget; the sandbox's 10 req/s limit is off: the cost counted is in calls.
RATE = 200


def costs(snapshot: dict[str, Any]) -> dict[str, int]:
    return {
        "app_api_requests": app_requests(snapshot),
        "smtp_connections": snapshot["smtp_connections"],
        "dns_queries": snapshot["dns_queries"],
        "pipelines_calls": pipelines_calls(snapshot),
        "identifies_landed": snapshot["writes"],
    }


def timed_run(sb: Sandbox, work: Path, label: str) -> tuple[float, dict[str, int]]:
    """One piped run of the job: its seconds and what it cost the sandbox."""
    started = time.monotonic()
    result = run_piped(sb, work, tap={"requests_per_second": RATE})
    seconds = time.monotonic() - started
    if not result.ok:
        raise RuntimeError(f"{label} run failed: {result.returncodes} {result.logs}")
    return seconds, costs(sb.obs.snapshot())


def run(quick: bool = False) -> dict[str, Any]:
    people = 500 if quick else 5_000
    with (
        Sandbox(World(seed=7, people=people)) as sb,
        tempfile.TemporaryDirectory(prefix="bench-rerun-") as tmp,
    ):
        sb.obs.faults.app_rate_limit = 0
        # Both runs use one folder, so one cache file: a re-run of one deployment.
        work = Path(tmp) / "job"
        first_seconds, first_costs = timed_run(sb, work, "first")
        report = evaluate(sb.world, sb.obs.landed_copy(), sb.obs.writes)
        sb.obs.reset_traffic()  # keep what landed: this is a re-run
        second_seconds, second_costs = timed_run(sb, work, "second")
    return {
        "benchmark": "rerun",
        "people": people,
        "first_run": {
            **first_costs,
            "seconds": round(first_seconds, 1),
            "coverage": round(report.coverage, 4),
            "accuracy": round(report.accuracy, 4),
        },
        "second_run": {**second_costs, "seconds": round(second_seconds, 1)},
        "app_api_requests": second_costs["app_api_requests"],
        "smtp_connections": second_costs["smtp_connections"],
        "pipelines_calls": second_costs["pipelines_calls"],
        "goal": {"smtp_connections": 0, "pipelines_calls": 0},
        "met": second_costs["smtp_connections"] == 0 and second_costs["pipelines_calls"] == 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 People instead of 5,000")
    print(json.dumps(run(parser.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
