"""Tap throughput: People per second against the sandbox at 200 ms latency and the 10 req/s limit.

Each 1000 People cost one search page and ten attribute batches, so at 10 requests per second the
limit allows at most 10 * 1000 / 11 ~ 909 People per second: that is the ceiling. The tap should
reach at least 90 % of it without a single 429 (sequential requests at 200 ms would reach about
half).

    .venv/bin/python benchmarks/bench_tap.py            # 20000 People
    .venv/bin/python benchmarks/bench_tap.py --quick    # a smoke test
    .venv/bin/python benchmarks/bench_tap.py --people 50000
"""

from __future__ import annotations

import argparse
import io
import json
import math
import time
from contextlib import redirect_stdout
from typing import Any

from cio_sandbox import Sandbox, World
from tap_customerio_people.listing import LISTING_PASSES
from tap_customerio_people.tap import TapCustomerIOPeople

LATENCY_S = 0.2
RATE_LIMIT = 10
PAGE_SIZE = 1000
HYDRATION_BATCH = 100
DEFAULT_PEOPLE = 20_000
QUICK_PEOPLE = 3_000


def ceiling(rate: float, page_size: int = PAGE_SIZE) -> float:
    """People per second the rate limit allows: a page of People costs 2 searches (the listing is
    walked twice when it spans more than one page, see the tap's `listing.py`) + ceil(n / 100)
    batches."""
    return rate * page_size / (LISTING_PASSES + math.ceil(page_size / HYDRATION_BATCH))


def measure(people: int, *, seed: int = 2024) -> dict[str, Any]:
    """Run the People stream in-process against a fresh sandbox and report throughput and 429s."""
    with Sandbox(World(seed=seed, people=people)) as sb:
        sb.obs.faults.app_latency = LATENCY_S
        sb.obs.faults.app_rate_limit = RATE_LIMIT
        tap = TapCustomerIOPeople(
            config=sb.tap_config(requests_per_second=RATE_LIMIT, page_size=PAGE_SIZE)
        )
        for name, stream in tap.streams.items():
            stream.selected = name == "people"
        out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
        started = time.monotonic()
        with redirect_stdout(out):
            tap.sync_all()
        seconds = time.monotonic() - started
        out.seek(0)
        cio_ids = [
            json.loads(line)["record"]["cio_id"]
            for line in out
            if line.startswith('{"type":"RECORD"')
        ]
        snapshot = sb.obs.snapshot()
    rate = len(cio_ids) / seconds
    limit = ceiling(RATE_LIMIT)
    return {
        "benchmark": "tap-customerio-people",
        "people": people,
        "records": len(cio_ids),
        "exactly_once": len(cio_ids) == len(set(cio_ids)) == people,
        "seconds": round(seconds, 2),
        "people_per_second": round(rate, 1),
        "ceiling_people_per_second": round(limit, 1),
        "fraction_of_ceiling": round(rate / limit, 3),
        "rate_limited_429_received": snapshot["rate_limited"].get("app", 0),
        "requests": sum(n for (service, _), n in snapshot["requests"].items() if service == "app"),
        "server_latency_s": LATENCY_S,
        "rate_limit_rps": RATE_LIMIT,
    }


def run(quick: bool) -> dict[str, Any]:
    """Entry point for a suite runner: the full measurement, or a small smoke run when ``quick``."""
    return measure(QUICK_PEOPLE if quick else DEFAULT_PEOPLE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--people", type=int, default=None, help=f"People in the world [{DEFAULT_PEOPLE}]"
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke test with {QUICK_PEOPLE} People"
    )
    args = parser.parse_args()
    result = measure(args.people) if args.people else run(args.quick)
    print(json.dumps(result, indent=2))
    print(
        f"tap: {result['people_per_second']:.0f} People/s = "
        f"{result['fraction_of_ceiling']:.0%} of the "
        f"{result['ceiling_people_per_second']:.0f}/s ceiling at {RATE_LIMIT} req/s and "
        f"{LATENCY_S * 1000:.0f} ms latency; {result['rate_limited_429_received']} 429s received; "
        f"{result['records']} records, exactly once: {result['exactly_once']}"
    )


if __name__ == "__main__":
    main()
