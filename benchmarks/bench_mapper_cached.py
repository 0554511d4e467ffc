"""Mapper benchmark 1: records per second when every verdict is already known (the hot path).

100,000 People records (from a sandbox World; no servers needed) go through `mapper-emailverify`
whose `cache_path` already holds a verdict for every address, and through `meltano-map-transform`
passing the same input through (`stream_maps: {people: {}}`), in the same run, each as its own
process reading a file on stdin and writing to /dev/null. The figure is the ratio of the two rates
(goal: at least 1.0, issue 19). In full mode, when PostgreSQL is installed, the same verdicts also
go into a throwaway PostgreSQL server (`cio_sandbox.postgres`) and the mapper runs a third time in
each round with `cache_url` instead of `cache_path`: the shared cache's cost against SQLite's
(issue 21).

Both executables start from compiled bytecode, as installed plugins do: they run with one bytecode
cache (`PYTHONPYCACHEPREFIX` in the benchmark's temporary directory, `PYTHONDONTWRITEBYTECODE`
unset) after one untimed warm-up each. Without it the comparison was uneven on the development
machine: `.venv` is installed by uv, which compiles nothing, and the shell sets
`PYTHONDONTWRITEBYTECODE`, so the mapper compiled singer-sdk and its dependencies from source on
every start (about 0.8 s of its 100,000-record run), while pip had compiled the peer's.

Peers live in a separate virtualenv, `.venv-peers` at the repository root, created on demand with
pip so that the project's own versions never move.

    python benchmarks/bench_mapper_cached.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cio_sandbox.postgres import PostgresServer, find_bin_dir

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / ".venv-peers"
PEER_PACKAGES = ("meltano-map-transform==0.12.3", "py3-validate-email==1.0.5.post2")
MAPPER = Path(sys.executable).parent / "mapper-emailverify"


def ensure_peers() -> Path:
    """The peers' virtualenv (made with pip when missing); returns its bin directory."""
    bin_dir = PEERS / "bin"
    marker = PEERS / ".peers-installed"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS)], check=True)
        subprocess.run(
            [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", *PEER_PACKAGES], check=True
        )
        marker.write_text("\n".join(PEER_PACKAGES) + "\n")
    return bin_dir


def people_input(count: int, path: Path) -> list[str]:
    """Write tap-shaped SCHEMA, RECORD and STATE lines; returns (address, status, substatus)."""
    from cio_sandbox import World

    world = World(seed=3, people=count)
    schema = {
        "type": "SCHEMA",
        "stream": "people",
        "key_properties": ["cio_id"],
        "schema": {
            "type": "object",
            "properties": {
                "cio_id": {"type": ["string"]},
                "id": {"type": ["string", "null"]},
                "email": {"type": ["string", "null"]},
                "attributes": {
                    "type": ["object", "null"],
                    "additionalProperties": {"type": ["string", "null"]},
                },
                "unsubscribed": {"type": ["boolean", "null"]},
            },
        },
    }
    addresses = []
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime())
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps(schema) + "\n")
        for i in range(count):
            p = world.person(i)
            # no EV_* attributes: every verdict must come from the cache, not from freshness
            attributes = {k: v for k, v in p.attributes.items() if not k.startswith("EV_")}
            record = {
                "cio_id": p.cio_id,
                "id": p.id,
                "email": p.email,
                "attributes": attributes,
                "unsubscribed": p.unsubscribed,
            }
            out.write(
                json.dumps(
                    {
                        "type": "RECORD",
                        "stream": "people",
                        "record": record,
                        "time_extracted": stamp,
                    }
                )
                + "\n"
            )
            if isinstance(p.email, str) and p.email.strip():
                addresses.append((p.email, p.truth.status, p.truth.substatus))
            if i % 10_000 == 9_999:
                out.write(
                    json.dumps({"type": "STATE", "value": {"bookmarks": {"people": {"n": i}}}})
                    + "\n"
                )
    return addresses


def fill_cache(path: Path, verdicts: list[tuple[str, str, str]]) -> None:
    from mapper_emailverify.stream_map.verdict_cache import SqliteResultsCache, Verdict, address_key

    cache = SqliteResultsCache(path, ttl_days=30)
    now = time.time()
    for address, status, substatus in verdicts:
        cache.put(address_key(address), Verdict(status, substatus, now))
    cache.close()


def fill_postgres(url: str, verdicts: list[tuple[str, str, str]]) -> None:
    from mapper_emailverify.stream_map.verdict_cache import Verdict, address_key
    from mapper_emailverify.stream_map.verdict_cache_pg import PostgresResultsCache

    cache = PostgresResultsCache(url, ttl_days=30)
    now = time.time()
    for address, status, substatus in verdicts:
        cache.put(address_key(address), Verdict(status, substatus, now))
    cache.close()


@contextlib.contextmanager
def postgres_url(quick: bool) -> Iterator[str | None]:
    """A throwaway PostgreSQL server's URL for the `cache_url` run (full mode, when PostgreSQL is
    installed), else None."""
    bin_dir = None if quick else find_bin_dir()
    if bin_dir is None:
        yield None
        return
    with PostgresServer(bin_dir) as server:
        yield server.url


def bytecode_env(work: Path) -> dict[str, str]:
    """The environment both executables run in: one bytecode cache, written (see the docstring)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return env


def timed(
    cmd: list[str], stdin: Path, label: str, env: dict[str, str] | None = None
) -> tuple[float, str]:
    started = time.perf_counter()
    with stdin.open("rb") as inp:
        proc = subprocess.run(
            cmd, stdin=inp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
        )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{label} failed: {proc.stderr[-2000:]}")
    return elapsed, proc.stderr


def run(quick: bool = False) -> dict[str, Any]:
    count = 10_000 if quick else 100_000
    repeats = 1 if quick else 2
    bin_dir = ensure_peers()
    with (
        tempfile.TemporaryDirectory(prefix="bench-mapper-cached-") as tmp,
        postgres_url(quick) as url,
    ):
        work = Path(tmp)
        data = work / "people.singer"
        verdicts = people_input(count, data)
        cache = work / "cache.sqlite"
        fill_cache(cache, verdicts)
        ours_cfg = work / "mapper.json"
        report = work / "report.json"
        ours_cfg.write_text(json.dumps({"cache_path": str(cache), "report_path": str(report)}))
        peer_cfg = work / "peer.json"
        peer_cfg.write_text(json.dumps({"stream_maps": {"people": {}}}))
        peer_cmd = [str(bin_dir / "meltano-map-transform"), "--config", str(peer_cfg)]
        ours_cmd = [str(MAPPER), "--config", str(ours_cfg)]
        env = bytecode_env(work)
        warm_up = work / "warm-up.singer"
        with data.open("rb") as whole:
            warm_up.write_bytes(b"".join(line for _, line in zip(range(100), whole, strict=False)))
        timed(peer_cmd, warm_up, "meltano-map-transform", env)
        timed(ours_cmd, warm_up, "mapper-emailverify", env)  # all cached: nothing is probed
        pg_cmd: list[str] = []
        if url is not None:  # the same cache in PostgreSQL (`cache_url`), timed in the same rounds
            fill_postgres(url, verdicts)
            pg_cfg = work / "mapper-pg.json"
            pg_cfg.write_text(json.dumps({"cache_url": url}))
            pg_cmd = [str(MAPPER), "--config", str(pg_cfg)]
            timed(pg_cmd, warm_up, "mapper-emailverify (cache_url)", env)
        ours_times, peer_times, pg_times = [], [], []
        for _ in range(repeats):  # interleaved, best of N, so all see the same machine load
            peer_times.append(timed(peer_cmd, data, "meltano-map-transform", env)[0])
            ours_times.append(timed(ours_cmd, data, "mapper-emailverify", env)[0])
            if pg_cmd:
                pg_times.append(timed(pg_cmd, data, "mapper-emailverify (cache_url)", env)[0])
        figures = json.loads(report.read_text())
    ours, peer = count / min(ours_times), count / min(peer_times)
    postgres: dict[str, Any] = {"measured": False, "why": "quick mode or no PostgreSQL installed"}
    if pg_times:
        pg = count / min(pg_times)
        postgres = {
            "measured": True,
            "records_per_second": round(pg, 1),
            "vs_sqlite": round(pg / ours, 3),
            "seconds": [round(t, 2) for t in pg_times],
        }
    return {
        "benchmark": "mapper_cached",
        "records": count,
        "mapper_emailverify_records_per_second": round(ours, 1),
        "meltano_map_transform_records_per_second": round(peer, 1),
        "ratio": round(ours / peer, 3),
        "goal_ratio": 1.0,
        "verdict_sources": figures["by_source"],
        "postgres_cache": postgres,
        "seconds": {
            "mapper_emailverify": [round(t, 2) for t in ours_times],
            "meltano_map_transform": [round(t, 2) for t in peer_times],
        },
        "note": "wall-clock of each process (start-up included, from compiled bytecode), best of "
        "the interleaved repeats",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 records, one repeat")
    print(json.dumps(run(parser.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
