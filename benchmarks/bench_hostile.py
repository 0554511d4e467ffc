"""Hostile mail servers: what one hostile address costs, and what tarpits cost everyone else.

Part 1, one address each, in a fresh process (so its peak memory is its own), against the
sandbox's DNS and one server of the hostile set (`cio_sandbox.hostile_smtp`) on loopback:

- `thirty_silent_mx`: a domain with 30 MX hosts on a server that never sends its banner;
- `hundred_a_records`: one implicit MX with 100 addresses, each closing after its banner;
- `just_under`: every reply sent 0.9 timeout late (the session never times out by itself);
- `endless_ehlo`: EHLO answered with continuation lines forever (at `smtp_timeout` 5 s, where the
  memory grows).

Each reports the seconds the verification took, the connections the server saw and the process's
peak RSS. `--engine DIR` runs the same cases with another checkout's mapper (its
`mapper-emailverify` directory first on `PYTHONPATH`): how the before-figures of a change are made.

Part 2, throughput: `ORDINARY` addresses of the sandbox's honest mail hosts (50 ms a reply) are
verified by one engine (`concurrency` 100) alone, and again with 5% more addresses at distinct
domains whose mail host never answers (a tarpit each). The figure is the ratio of the two rates on
the ordinary addresses (ordinary addresses / seconds until the last of them is answered), measured
side by side, interleaved, best of each (goal: at least 0.8).

    python benchmarks/bench_hostile.py [--quick] [--engine DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

ORDINARY = 1000
TARPIT_SHARE = 0.05
SMTP_LATENCY = 0.05
CASES = ("thirty_silent_mx", "hundred_a_records", "just_under", "endless_ehlo")


async def _one_case(case: str) -> dict[str, Any]:
    from cio_sandbox import Sandbox, World
    from cio_sandbox.hostile_smtp import add_hostile_zone, start_hostile_fleet, start_hostile_smtp
    from mapper_emailverify import Verifier

    timeout = 5.0 if case == "endless_ehlo" else 1.0
    with Sandbox(World(seed=3, people=10, domains=2)) as sb:
        servers = []
        if case == "hundred_a_records":
            ips = [f"127.0.77.{i}" for i in range(1, 101)]
            fleet = await start_hostile_fleet(dict.fromkeys(ips, "drop_after_banner"))
            servers = list(fleet.values())
            add_hostile_zone(sb.world, "case.example", a=ips)
        else:
            if case == "thirty_silent_mx":
                server = await start_hostile_smtp("silent")
                mx = [f"mx{i}.case.example" for i in range(30)]
                add_hostile_zone(
                    sb.world, "case.example", mx=mx, hosts={m: ["127.0.0.1"] for m in mx}
                )
            elif case == "just_under":
                server = await start_hostile_smtp("just_under", delay=0.9 * timeout)
                add_hostile_zone(sb.world, "case.example", a=["127.0.0.1"])
            else:
                server = await start_hostile_smtp("endless_ehlo")
                add_hostile_zone(sb.world, "case.example", a=["127.0.0.1"])
            servers = [server]
        config = sb.mapper_config(smtp_timeout=timeout, smtp_port=servers[0].port)
        try:
            async with Verifier(config) as verifier:
                started = time.monotonic()
                result = await verifier.verify("someone@case.example")
                seconds = time.monotonic() - started
        finally:
            for server in servers:
                await server.close()
    return {
        "case": case,
        "seconds": round(seconds, 2),
        "verdict": f"{result.status}/{result.substatus}",
        "connections": sum(server.connections for server in servers),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


#: Quick mode (the suite's smoke test) runs the two cases that end at once.
QUICK_CASES = ("hundred_a_records", "endless_ehlo")


def per_address(engine: str | None, cases: tuple[str, ...] = CASES) -> list[dict[str, Any]]:
    env = dict(os.environ)
    if engine:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [engine, env.get("PYTHONPATH")]))
    rows = []
    for case in cases:
        done = subprocess.run(
            [sys.executable, __file__, "--case", case],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


async def _rate(config: dict[str, Any], ordinary: list[str], tarpits: list[str]) -> float:
    from mapper_emailverify import Verifier

    async with Verifier(config) as verifier:
        started = time.monotonic()
        last = started

        async def ordinary_one(address: str) -> None:
            nonlocal last
            await verifier.verify(address)
            last = max(last, time.monotonic())

        # Tarpits spread through the input, as sign-ups would be.
        step = max(1, len(ordinary) // max(1, len(tarpits)))
        jobs = []
        tarpit_iter = iter(tarpits)
        for index, address in enumerate(ordinary):
            if index % step == 0 and (tarpit := next(tarpit_iter, None)) is not None:
                jobs.append(verifier.verify(tarpit))
            jobs.append(ordinary_one(address))
        await _bounded_gather(jobs, 2 * verifier.config.concurrency)
        return len(ordinary) / (last - started)


async def _bounded_gather(jobs: list[Any], window: int) -> None:
    """Feed jobs in input order with at most `window` waiting, like the mapper's reader."""
    pending: set[asyncio.Task[Any]] = set()
    for job in jobs:
        pending.add(asyncio.ensure_future(job))
        if len(pending) >= window:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    await asyncio.gather(*pending)


def throughput(quick: bool) -> dict[str, Any]:
    from cio_sandbox import Sandbox, World
    from cio_sandbox.hostile_smtp import add_hostile_zone, start_hostile_fleet

    count = 200 if quick else ORDINARY
    repeats = 1 if quick else 3
    world = World(
        seed=31,
        people=count,
        domains=200,
        smtp_latency=SMTP_LATENCY,
        case_weights=(("normal", 1),),
    )
    ordinary = [p.email for p in world.iter_people() if p.email]
    tarpit_count = max(1, round(TARPIT_SHARE * len(ordinary)))
    with Sandbox(world) as sb:
        ips = [f"127.0.99.{i + 1}" for i in range(tarpit_count)]
        for i, ip in enumerate(ips):
            add_hostile_zone(sb.world, f"tarpit{i}.bench.example", a=[ip])
        tarpits = [f"x@tarpit{i}.bench.example" for i in range(tarpit_count)]
        config = sb.mapper_config(smtp_timeout=4.0)

        async def measure() -> dict[str, list[float]]:
            fleet = await start_hostile_fleet(dict.fromkeys(ips, "silent"), port=sb.smtp_port)
            rates: dict[str, list[float]] = {"alone": [], "with_tarpits": []}
            try:
                for _ in range(repeats):
                    rates["alone"].append(await _rate(config, ordinary, []))
                    rates["with_tarpits"].append(await _rate(config, ordinary, tarpits))
            finally:
                for server in fleet.values():
                    await server.close()
            return rates

        rates = asyncio.run(measure())
    alone, with_tarpits = max(rates["alone"]), max(rates["with_tarpits"])
    return {
        "ordinary": len(ordinary),
        "tarpits": tarpit_count,
        "rates_alone": [round(r, 1) for r in rates["alone"]],
        "rates_with_tarpits": [round(r, 1) for r in rates["with_tarpits"]],
        "ratio": round(with_tarpits / alone, 3),
    }


def run(quick: bool = False, engine: str | None = None) -> dict[str, Any]:
    cases = QUICK_CASES if quick else CASES
    return {"per_address": per_address(engine, cases), "throughput": throughput(quick)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--engine", help="a mapper-emailverify directory to measure instead")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(asyncio.run(_one_case(args.case))))
        return
    if args.engine:
        print(json.dumps({"per_address": per_address(args.engine)}, indent=2))
        return
    print(json.dumps(run(args.quick), indent=2))


if __name__ == "__main__":
    main()
