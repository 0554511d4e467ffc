"""Incremental runs: what verifying 500 new sign-ups costs among 100,000 verified People.

A sandbox workspace whose People all carry a fresh verification (`EV_*` attributes landed an hour
ago), the App API limited to 10 requests per second as Customer.io does, and the tap at its
default budget (10 req/s):

1. the daily job (`verify-people`: every Person, suppressions too) runs once over it: its wall time
   is the reference (nothing is probed or written: every verdict is fresh);
2. 500 People sign up; the `verify-new-people` job runs (the tap with `filter: unverified` and
   only the `people` stream selected, as `meltano.yml` declares it): its App API requests, wall
   time, SMTP connections and writes are measured;
3. it runs again right after: nothing is new.

Goals (issue "New sign-ups verified within minutes"): App API requests of step 2 at most
1 + ceil(500/100) + about 10, none growing with the workspace; its wall time at most 1/20 of
step 1; step 3 at most 3 App API requests and 0 SMTP connections. The three plugins are piped as
`meltano run` pipes them (`cio_sandbox.pipeline.run_piped`), so Meltano's own start-up (a few
seconds per run) is not counted.

    .venv/bin/python benchmarks/bench_incremental.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import app_requests, landing_requests, pipelines_calls
from cio_sandbox import Sandbox, World
from cio_sandbox.pipeline import run_piped
from cio_sandbox.report import evaluate

NEW_PEOPLE = 500
HOUR = 3_600


def verified_workspace(sb: Sandbox) -> int:
    """Land a day-old verification (the world's truth) on every Person with an address."""
    when = int(time.time()) - HOUR  # fresh, even for Unknowns (trusted 20 hours)
    count = 0
    for person in sb.world.iter_people():
        if not person.email:
            continue
        traits = {
            "EV_Status": person.truth.status,
            "EV_SubStatus": person.truth.substatus,
            "EV_Validation_Timestamp": when,
        }
        sb.obs.land(person.cio_id, traits, None)
        count += 1
    return count


def measured(sb: Sandbox, work: Path, label: str, **options: Any) -> dict[str, Any]:
    sb.obs.reset_traffic()
    started = time.monotonic()
    result = run_piped(sb, work, **options)
    seconds = time.monotonic() - started
    if not result.ok:
        logs = {name: log[-1500:] for name, log in result.logs.items()}
        raise RuntimeError(f"{label} run failed: {result.returncodes} {logs}")
    snap = sb.obs.snapshot()
    app = app_requests(snap)
    landing = landing_requests(snap, result.logs.get("target-customerio-ev"))
    return {
        "seconds": round(seconds, 1),
        "app_api_requests": app,
        "app_api_requests_landing_check": landing,
        "app_api_requests_reading": app - landing,
        "smtp_connections": snap["smtp_connections"],
        "pipelines_calls": pipelines_calls(snap),
        "writes": snap["writes"],
        "app_api_requests_by_endpoint": {
            endpoint: n for (service, endpoint), n in snap["requests"].items() if service == "app"
        },
        "final_state": result.final_state,
    }


def run(quick: bool = False) -> dict[str, Any]:
    people = 2_000 if quick else 100_000
    new = 50 if quick else NEW_PEOPLE
    with (
        Sandbox(World(seed=17, people=people)) as sb,
        tempfile.TemporaryDirectory(prefix="bench-incremental-") as tmp,
    ):
        work = Path(tmp)
        verified = verified_workspace(sb)
        full = measured(sb, work / "full", "daily")
        full.pop("final_state")
        added = sb.add_people(new)
        incremental_options: dict[str, Any] = {
            "tap": {"filter": "unverified"},
            "streams": ["people"],
        }
        first = measured(sb, work / "new", "verify-new-people", **incremental_options)
        report = evaluate(sb.world, sb.obs.landed_copy(), sb.obs.writes)
        state = first.pop("final_state")
        again = measured(
            sb, work / "new", "verify-new-people again", state=state, **incremental_options
        )
        again.pop("final_state")
        new_with_email = sum(1 for p in added if p.email)
    budget = 1 + math.ceil(new / 100) + 10
    return {
        "benchmark": "incremental",
        "people": people,
        "verified_people": verified,
        "new_people": new,
        "new_people_with_email": new_with_email,
        "full_run": full,
        "incremental_run": first,
        "second_incremental_run": again,
        "coverage": round(report.coverage, 4),
        "false_invalid": report.false_invalid,
        "app_api_request_budget": budget,
        "wall_ratio": round(first["seconds"] / full["seconds"], 3),
        "goal": {
            "app_api_requests": f"<= {budget}",
            "wall_ratio": "<= 0.05",
            "second_run": "<= 3 App API requests, 0 SMTP connections",
        },
        "met": (
            first["app_api_requests"] <= budget
            and first["seconds"] <= full["seconds"] / 20
            and again["app_api_requests"] <= 3
            and again["smtp_connections"] == 0
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 People and 50 new ones")
    print(json.dumps(run(parser.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
