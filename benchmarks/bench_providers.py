"""Right verdicts on the providers real People use, and the catch-all probes a run spends.

A world where most People sit on the big providers' look-alikes (`PROVIDER_CASE_WEIGHTS`: Gmail,
Google Workspace custom domains on one host, Outlook.com, Microsoft 365, Yahoo/AOL, iCloud, Zoho
greylisting, a Postgrey host naming its delay, Yandex, Mail.ru, GMX/Web.de, Proton) is verified by
the engine in two "days": day 1 verifies half of the People with an empty domain-knowledge store
(`SqliteDomainKnowledge`, the mapper's, in a temporary file), day 2 verifies the other half (new
addresses, mostly on the same domains) with the store day 1 filled. Greylisting is retried within
the run (`greylist_retry_after` 2 s; the look-alikes defer a new triplet 3-4 s).

Figures: accuracy per provider against the world's ground truth (correct, exact, false Invalid,
false Valid; `cio_sandbox.report.accuracy_by_provider`), greylisted addresses resolved on retry,
and catch-all probes per day (sent, skipped by a provider rule, answered from the domain cache),
with what the servers saw (random-mailbox RCPTs, transactions mixing domains, Outlook.com's second
RCPT).

    python benchmarks/bench_providers.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from cio_sandbox import Sandbox, World
from cio_sandbox.report import accuracy_by_provider
from cio_sandbox.world import PROVIDER_CASE_WEIGHTS
from mapper_emailverify import Verifier
from mapper_emailverify.stream_map.domain_cache import SqliteDomainKnowledge


def _day(sb: Sandbox, addresses: list[str], store_path: Path, bounces: list[str]) -> dict[str, Any]:
    sb.obs.reset_counters()
    config = sb.mapper_config(
        hard_bounces=bounces,
        smtp_timeout=2.0,
        greylist_retry_after=2.0,
        greylist_max_wait=30.0,
        concurrency=200,
    )
    store = SqliteDomainKnowledge(store_path, ttl_days=7)

    async def go() -> tuple[list[Any], Counter[str]]:
        async with Verifier(config, knowledge=store) as verifier:
            results = await verifier.verify_many(addresses)
            return results, Counter(verifier.counters)

    started = time.monotonic()
    try:
        results, counters = asyncio.run(go())
    finally:
        store.close()
    seconds = time.monotonic() - started
    verdicts = {
        a: (str(r.status), str(r.substatus)) for a, r in zip(addresses, results, strict=True)
    }
    table = accuracy_by_provider(sb.world, verdicts)
    return {
        "addresses": len(addresses),
        "seconds": round(seconds, 2),
        "accuracy": {name: row.as_dict() for name, row in table.items()},
        "engine": dict(counters),
        "servers": {
            "stranger_rcpts": sum(sb.obs.stranger_rcpts.values()),
            "mixed_domain_rejections": sum(sb.obs.mixed_domain_rejections.values()),
            "outlook_second_rcpt_rejections": sum(
                n for host, n in sb.obs.rcpt_limit_rejections.items() if "olc." in host
            ),
        },
    }


def run(quick: bool = False) -> dict[str, Any]:
    people = 400 if quick else 4000
    with (
        Sandbox(World(seed=18, people=people, case_weights=PROVIDER_CASE_WEIGHTS)) as sb,
        tempfile.TemporaryDirectory(prefix="bench-providers-") as tmp,
    ):
        addresses = sorted({p.email for p in sb.world.iter_people() if p.email and "@" in p.email})
        bounces = [
            row["email"] for kind in World.HARD_BOUNCE_KINDS for row in sb.world.suppressions(kind)
        ]
        store = Path(tmp) / "cache.sqlite"
        day1 = _day(sb, addresses[0::2], store, bounces)
        day2 = _day(sb, addresses[1::2], store, bounces)
    totals: dict[str, dict[str, int]] = {}
    for day in (day1, day2):
        for name, row in day["accuracy"].items():
            total = totals.setdefault(name, Counter())
            for key in ("people", "correct", "exact", "false_invalid", "false_valid"):
                total[key] += row[key]
    return {
        "benchmark": "providers",
        "people": people,
        "day1": day1,
        "day2": day2,
        "accuracy": {name: dict(row) for name, row in totals.items()},
        "false_invalid": sum(row["false_invalid"] for row in totals.values()),
        "false_valid_unverifiable": sum(
            totals.get(name, {}).get("false_valid", 0) for name in ("yahoo", "mailru")
        ),
    }


def markdown(result: dict[str, Any]) -> str:
    """The README's per-provider accuracy table."""
    lines = [
        "| provider | People | correct | exact | false Invalid | false Valid |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in result["accuracy"].items():
        lines.append(
            f"| {name} | {row['people']} | {row['correct']} | {row['exact']} | "
            f"{row['false_invalid']} | {row['false_valid']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    result = run(quick=args.quick)
    print(json.dumps(result, indent=2))
    print(markdown(result))


if __name__ == "__main__":
    main()
