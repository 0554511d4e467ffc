"""Several workers, one mail world: what more mappers buy on one egress IP, and on several.

Issue 21's scaling question, measured: a sandbox world with about 80 % of the People on three
shared mail hosts (`SHARED_HOST_CASE_WEIGHTS`), every SMTP exchange `SMTP_LATENCY`, each mail host
allowed `RATE_CAP` recipients a minute and `CONNECTIONS` connections per egress IP. The same
addresses, nothing cached (a fresh PostgreSQL database as `cache_url` each time), verified three
ways, the mappers started together and timed until the last one ends:

- one mapper, every address;
- three mappers on one egress IP (`egress_ip` unset), each a third of the addresses: they share
  each host's connection slots and recipient rate through `cache_url`;
- three mappers told they sit on three egress IPs (`egress_ip` a, b, c), each a third.

Figures: addresses per second and the ratio to one mapper, peak connections per mail host and
peak recipients per host in any 60 s window (the sandbox's counters: every egress IP is really
127.0.0.1 here, so the third way's peaks are the sum of three IPs' and may reach three times
the caps). Three workers on one IP should verify no faster than one and never pass its caps;
three IPs should be about three times as fast.

    python benchmarks/bench_workers.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cio_sandbox import Sandbox, World
from cio_sandbox.postgres import PostgresServer, find_bin_dir, new_database
from cio_sandbox.world import SHARED_HOST_CASE_WEIGHTS

SMTP_LATENCY = 0.02
#: Recipients per minute per mail host: low enough that the hosts' politeness, not this 2-core
#: machine, sets the pace of one mapper.
RATE_CAP = 1200
CONNECTIONS = 3  # max_connections_per_mx, the default
MAPPER = str(Path(sys.executable).parent / "mapper-emailverify")
WAYS: dict[str, list[str | None]] = {
    "one_worker": [None],
    "three_workers_one_ip": [None, None, None],
    "three_workers_three_ips": ["egress-a", "egress-b", "egress-c"],
}


def run(quick: bool = False) -> dict[str, Any]:
    people = 300 if quick else 3000
    world = World(
        seed=61,
        people=people,
        shared_domains=30 if quick else 150,
        smtp_latency=SMTP_LATENCY,
        case_weights=SHARED_HOST_CASE_WEIGHTS,
    )
    with Sandbox(world) as sb, _postgres() as server_url:
        addresses = [p.email for p in world.iter_people() if p.email]
        ways = {name: _way(sb, server_url, addresses, egress) for name, egress in WAYS.items()}
    one = ways["one_worker"]["addresses_per_second"]
    for way in ways.values():
        way["x_one_worker"] = round(way["addresses_per_second"] / one, 2)
    return {
        "addresses": len(addresses),
        "people": people,
        "max_connections_per_mx": CONNECTIONS,
        "max_rcpt_per_minute_per_mx": RATE_CAP,
        "smtp_latency_s": SMTP_LATENCY,
        "ways": ways,
    }


@contextmanager
def _postgres() -> Iterator[str]:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed: run scripts/ensure_postgres.sh (as root)")
    with PostgresServer(bin_dir) as server:
        yield server.url


def _way(
    sb: Sandbox, server_url: str, addresses: list[str], egress: list[str | None]
) -> dict[str, Any]:
    """Verify `addresses` split over one mapper per entry of `egress`, all started at once."""
    url = new_database(server_url, "bench_workers")
    folder = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    sb.obs.reset_counters()
    workers = []
    started = time.monotonic()
    for i, name in enumerate(egress):
        config = sb.mapper_config(
            cache_url=url,
            max_connections_per_mx=CONNECTIONS,
            max_rcpt_per_minute_per_mx=RATE_CAP,
            progress_interval_seconds=0,
            **({"egress_ip": name} if name else {}),
        )
        path = folder / f"mapper-{i}.json"
        path.write_text(json.dumps(config))
        share = addresses[i :: len(egress)]
        source = folder / f"input-{i}.jsonl"
        source.write_text(_singer(share))
        with source.open() as stdin:
            workers.append(
                subprocess.Popen(
                    [MAPPER, "--config", str(path)],
                    stdin=stdin,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
    written = 0
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=1800)
        if worker.returncode != 0:
            raise RuntimeError(f"a mapper failed: {stderr[-2000:]}")
        written += stdout.count('"type":"RECORD"') + stdout.count('"type": "RECORD"')
    seconds = time.monotonic() - started
    if written != len(addresses):
        raise RuntimeError(f"{written} records written of {len(addresses)}")
    snapshot = sb.obs.snapshot()
    return {
        "workers": len(egress),
        "egress_ips": len(set(egress)),
        "seconds": round(seconds, 2),
        "addresses_per_second": round(len(addresses) / seconds, 1),
        "smtp_connections": snapshot["smtp_connections"],
        "peak_connections_per_host": max(snapshot["smtp_peak_concurrency"].values(), default=0),
        "peak_rcpt_per_minute_per_host": max(snapshot["peak_rcpt_per_minute"].values(), default=0),
    }


def _singer(addresses: list[str]) -> str:
    schema = {
        "type": "SCHEMA",
        "stream": "people",
        "key_properties": ["id"],
        "schema": {"type": "object", "properties": {"id": {}, "email": {}}},
    }
    lines: list[Any] = [schema]
    lines += [
        {"type": "RECORD", "stream": "people", "record": {"id": i, "email": email}}
        for i, email in enumerate(addresses)
    ]
    return "".join(json.dumps(line) + "\n" for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 People instead of 3,000")
    print(json.dumps(run(parser.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
