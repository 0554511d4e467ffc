"""Probing at the speed mail servers allow: the whole job on a world where most People sit on a few
large mail hosts.

A sandbox world (`SHARED_HOST_CASE_WEIGHTS`, `shared_domains` 300) puts about 80 % of the People
on three hosts, each serving many custom domains as real ones do: Google Workspace
(aspmx.l.google.com, 120 domains), Microsoft 365 (90 tenants, each its own MX name, all on one EOP
address) and a hosting provider (90 domains), plus Gmail. Every SMTP exchange takes
`SMTP_LATENCY`, a round trip: the replies to a pipelined group come back together, one latency
after it.
The job (tap | mapper | target, `cio_sandbox.pipeline.run_piped`, nothing cached) verifies every
Person; the App API's 10 requests per second set the ceiling (about 900 People per second).

Figures: People per second (and the share of the App API ceiling), recipients per SMTP session
(RCPTs the servers received / connections), peak connections per host (never above
`max_connections_per_mx`), peak recipients per host in any 60 s window (never above
`max_rcpt_per_minute_per_mx`, the job run once per cap in `RATE_CAPS`), accuracy and false
Invalid against the ground truth; correct verdicts per second against the 84 People/s measured
when issue 19 was filed. `--engine DIR` runs the same job with another checkout's mapper (its
`mapper-emailverify` directory first on `PYTHONPATH`): how the before-figures are made.

    python benchmarks/bench_sessions.py [--quick] [--engine DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import app_requests
from cio_sandbox import Sandbox, World
from cio_sandbox.pipeline import run_piped
from cio_sandbox.report import evaluate
from cio_sandbox.world import SHARED_HOST_CASE_WEIGHTS

SMTP_LATENCY = 0.02  # one round trip: a pipelined group's replies come back together
#: Recipients per minute per mail host (`max_rcpt_per_minute_per_mx`): what a clean, dedicated
#: egress IP might be allowed, then twice that. The first is the headline; quick mode runs it only.
RATE_CAPS = (6000, 12000)
CONNECTIONS = 3  # max_connections_per_mx, the default
#: People per second of the whole job on this kind of world when issue 19 was filed.
ISSUE_BASELINE = 84.0


def run(quick: bool = False, engine: str | None = None) -> dict[str, Any]:
    caps = RATE_CAPS[:1] if quick else RATE_CAPS
    runs = [_job(1_000 if quick else 20_000, cap, engine) for cap in caps]
    headline = dict(runs[0])
    headline["by_rate_cap"] = {str(r["max_rcpt_per_minute_per_mx"]): r for r in runs}
    headline["issue_baseline_people_per_second"] = ISSUE_BASELINE
    return headline


def _job(people: int, rate_cap: int, engine: str | None) -> dict[str, Any]:
    env = None
    if engine:
        env = {"PYTHONPATH": os.pathsep.join(filter(None, [engine, os.environ.get("PYTHONPATH")]))}
    world = World(
        seed=19,
        people=people,
        case_weights=SHARED_HOST_CASE_WEIGHTS,
        shared_domains=300,
        smtp_latency=SMTP_LATENCY,
    )
    with Sandbox(world) as sb, tempfile.TemporaryDirectory(prefix="bench-sessions-") as tmp:
        started = time.monotonic()
        result = run_piped(
            sb,
            Path(tmp) / "job",
            mapper={
                "max_rcpt_per_minute_per_mx": rate_cap,
                "max_connections_per_mx": CONNECTIONS,
                "smtp_timeout": 5,
                # An older engine may time out on queues here and stop the run as a broken
                # environment: let it finish, so its accuracy shows what it would write.
                **({"infrastructure_unknown_threshold": 1} if engine else {}),
            },
            env=env,
            timeout=1800,
        )
        seconds = time.monotonic() - started
        if not result.ok:
            raise RuntimeError(f"job failed: {result.returncodes} {result.logs}")
        snapshot = sb.obs.snapshot()
        report = evaluate(sb.world, sb.obs.landed_copy(), sb.obs.writes)
        rcpts = sum(sb.obs.rcpt.values())
        connections = snapshot["smtp_connections"]
        peak_connections = max(sb.obs.smtp_peak_concurrency.values(), default=0)
        peak_rate = dict(sb.obs.peak_rcpt_per_minute)
        requests = app_requests(snapshot)
    correct = round(people * report.accuracy / seconds, 1)
    return {
        "benchmark": "sessions",
        "engine": engine or "this checkout",
        "people": people,
        "seconds": round(seconds, 1),
        "people_per_second": round(people / seconds, 1),
        "correct_verdicts_per_second": correct,
        "x_issue_baseline": round(correct / ISSUE_BASELINE, 2),
        "app_api_requests": requests,
        "app_api_ceiling_people_per_second": round(people / (requests / 10), 1),
        "rcpts": rcpts,
        "smtp_connections": connections,
        "rcpts_per_session": round(rcpts / max(connections, 1), 2),
        "peak_connections_per_host": peak_connections,
        "max_connections_per_mx": CONNECTIONS,
        "peak_rcpt_per_minute_per_host": max(peak_rate.values(), default=0),
        "max_rcpt_per_minute_per_mx": rate_cap,
        "coverage": round(report.coverage, 4),
        "accuracy": round(report.accuracy, 4),
        "false_invalid": report.false_invalid,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 People instead of 20,000")
    parser.add_argument("--engine", help="a mapper-emailverify directory to measure instead")
    args = parser.parse_args()
    print(json.dumps(run(args.quick, args.engine), indent=2))


if __name__ == "__main__":
    main()
