"""Target benchmark: identifies per second into the sandbox Pipelines API, vs the official client.

N People (default 100,000, so that start-up amortizes) from a sandbox World, with EV verdicts, are
written to the same sandbox Pipelines server in the same run by:
- `target-customerio-ev` (the executable, Singer input from a file on stdin, default settings), and
- the official `customerio-cdp-analytics` client (`from customerio import analytics`, default
  settings, `analytics.host` pointed at the sandbox), sending the very same identifies (userId and
  traits from the target's own message builder; email-only People get the email as userId, since
  the client refuses an empty one), then `flush()` and `shutdown()`.
Each runs as its own process, timed wall-clock from spawn to exit (start-up included), best of the
interleaved repeats; the sandbox is also polled for the landing rate between the first and the last
write (start-up excluded). Only what landed in the sandbox counts (the official client drops what
overflows its queue). Two network conditions: loopback as is, and 20 ms added per Pipelines request
(a nearby region).

    python benchmarks/bench_target.py [--quick] [--people N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from cio_sandbox import Sandbox, World
from target_customerio_ev.identify import Write, WriteBuilder
from target_customerio_ev.pipelines import pipelines_identify

TARGET = Path(sys.executable).parent / "target-customerio-ev"
VERIFIED_AT = "2026-11-01T10:30:15Z"
SCHEMA = {
    "type": "object",
    "properties": {
        "cio_id": {"type": "string"},
        "id": {"type": ["string", "null"]},
        "email": {"type": ["string", "null"]},
        "attributes": {"type": ["object", "null"]},
        "unsubscribed": {"type": ["boolean", "null"]},
        "EV_Status": {"type": ["string", "null"]},
        "EV_SubStatus": {"type": ["string", "null"]},
        "EV_Validation_Timestamp": {"type": ["string", "null"], "format": "date-time"},
    },
}

OFFICIAL_CLIENT = r"""
import json, sys
from customerio import analytics
analytics.write_key = sys.argv[1]
analytics.host = sys.argv[2]
failed = []
analytics.on_error = lambda error, batch: failed.append(len(batch))
accepted = 0
with open(sys.argv[3]) as fh:
    for line in fh:
        user_id, traits = json.loads(line)
        ok, _ = analytics.identify(user_id, traits)
        accepted += bool(ok)
analytics.flush()
analytics.shutdown()
print(json.dumps({"accepted": accepted, "failed_batches": len(failed)}))
"""


def build_inputs(world: World, work: Path) -> tuple[Path, Path, int]:
    """The Singer file for the target and the (userId, traits) file for the official client."""
    builder = WriteBuilder.for_schema(
        SCHEMA,
        identify_by="auto",
        traits=("EV_Status", "EV_SubStatus", "EV_Validation_Timestamp"),
        timestamp_format="unix",
        skip_unchanged=True,
    )
    singer, calls = work / "people.singer", work / "identifies.jsonl"
    when = dt.datetime.fromisoformat(VERIFIED_AT)
    sent = 0
    with singer.open("w") as s_fh, calls.open("w") as c_fh:
        s_fh.write(
            json.dumps(
                {
                    "type": "SCHEMA",
                    "stream": "people",
                    "key_properties": ["cio_id"],
                    "schema": SCHEMA,
                }
            )
            + "\n"
        )
        for p in world.iter_people():
            record = {
                "cio_id": p.cio_id,
                "id": p.id,
                "email": p.email,
                "attributes": p.attributes,
                "unsubscribed": p.unsubscribed,
                "EV_Status": p.truth.status,
                "EV_SubStatus": p.truth.substatus,
                "EV_Validation_Timestamp": VERIFIED_AT,
            }
            s_fh.write(json.dumps({"type": "RECORD", "stream": "people", "record": record}) + "\n")
            write = builder.build({**record, "EV_Validation_Timestamp": when})
            if isinstance(write, Write):
                message = pipelines_identify(write)
                user_id = message["userId"] or message["traits"]["email"]
                traits = {
                    k: v for k, v in message["traits"].items() if k != "email" or message["userId"]
                }
                c_fh.write(json.dumps([user_id, traits]) + "\n")
                sent += 1
        s_fh.write(
            json.dumps({"type": "STATE", "value": {"bookmarks": {"people": {"done": True}}}}) + "\n"
        )
    return singer, calls, sent


class LandingClock:
    """Polls the sandbox while a run goes on: when the first and the last write landed."""

    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        self.first: tuple[float, int] | None = None
        self.last: tuple[float, int] = (0.0, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            # len() is O(1): summing every Person's write count would starve the server's thread
            n, now = len(self.sb.obs.messages_seen), time.perf_counter()
            if n and self.first is None:
                self.first = (now, n)
            if n != self.last[1]:
                self.last = (now, n)
            time.sleep(0.002)

    def __enter__(self) -> LandingClock:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def rate(self) -> float:
        """Writes per second from the first landing to the last (start-up excluded)."""
        if self.first is None or self.last[0] <= self.first[0]:
            return 0.0
        return (self.last[1] - self.first[1]) / (self.last[0] - self.first[0])


def timed(cmd: list[str], sb: Sandbox, stdin: Path | None = None) -> tuple[float, float, str]:
    """Wall-clock seconds of the process, its landing rate, and its stdout."""
    with LandingClock(sb) as clock:
        started = time.perf_counter()
        with stdin.open() if stdin else open("/dev/null") as inp:
            proc = subprocess.run(cmd, stdin=inp, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - started
        time.sleep(0.01)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {proc.stderr[-2000:]}")
    return elapsed, clock.rate(), proc.stdout


def landed_writes(sb: Sandbox) -> int:
    return sum(sb.obs.writes.values())


def measure(sb: Sandbox, work: Path, singer: Path, calls: Path, repeats: int) -> dict[str, Any]:
    config = work / "target.json"
    config.write_text(json.dumps(sb.target_config()))
    client = work / "official_client.py"
    client.write_text(OFFICIAL_CLIENT)
    ours: list[tuple[float, float, int]] = []
    official: list[tuple[float, float, int, dict[str, Any]]] = []
    for _ in range(repeats):  # interleaved, so both see the same machine load
        sb.obs.reset_counters()
        elapsed, rate, _ = timed([str(TARGET), "--config", str(config)], sb, singer)
        ours.append((elapsed, rate, landed_writes(sb)))
        sb.obs.reset_counters()
        elapsed, rate, out = timed(
            [sys.executable, str(client), sb.keys.pipelines_api_key, sb.pipelines_url, str(calls)],
            sb,
        )
        official.append(
            (elapsed, rate, landed_writes(sb), json.loads(out.strip().splitlines()[-1]))
        )
    best_ours, best_official = min(ours), min(official, key=lambda r: r[0])
    ours_rate, official_rate = best_ours[2] / best_ours[0], best_official[2] / best_official[0]
    ours_landing, official_landing = max(r[1] for r in ours), max(r[1] for r in official)
    return {
        "target_records_per_second": round(ours_rate, 1),
        "official_client_records_per_second": round(official_rate, 1),
        "ratio": round(ours_rate / official_rate, 2) if official_rate else None,
        "target_landing_rate": round(ours_landing, 1),
        "official_client_landing_rate": round(official_landing, 1),
        "landing_ratio": round(ours_landing / official_landing, 2) if official_landing else None,
        "target_landed": best_ours[2],
        "official_client_landed": best_official[2],
        "official_client_accepted": best_official[3]["accepted"],
        "seconds": {
            "target": [round(r[0], 2) for r in ours],
            "official_client": [round(r[0], 2) for r in official],
        },
    }


def run(quick: bool = False, count: int | None = None) -> dict[str, Any]:
    # 100,000: the ~1 s start-up of an SDK target amortizes
    count = count or (3_000 if quick else 100_000)
    repeats = 1 if quick else 2
    world = World(seed=7, people=count)
    with tempfile.TemporaryDirectory(prefix="bench-target-") as tmp, Sandbox(world) as sb:
        work = Path(tmp)
        singer, calls, identifies = build_inputs(world, work)
        loopback = measure(sb, work, singer, calls, repeats)
        sb.obs.faults.pipelines_latency = 0.02
        # a secondary figure: one repeat keeps `make bench` short
        latency = measure(sb, work, singer, calls, 1)
        sb.obs.reset_faults()
    return {
        "benchmark": "target",
        "records": count,
        "identifies": identifies,
        "goal_ratio": 2.0,
        "loopback": loopback,
        "latency_20ms": latency,
        "ratio": loopback["ratio"],
        "note": "records_per_second: identifies that landed / wall-clock of the process "
        "(start-up included), best of interleaved repeats. landing_rate: writes per second between "
        "the first and the last landing seen by the sandbox (start-up and the first request "
        "excluded), best of the repeats.",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3,000 People, one repeat")
    parser.add_argument("--people", type=int, default=None, help="People (identifies) [100,000]")
    args = parser.parse_args()
    print(json.dumps(run(args.quick, args.people), indent=2))


if __name__ == "__main__":
    main()
