"""Mapper benchmark 2: verifications per second against real (sandbox) DNS and SMTP servers.

A sandbox World with 500 mail domains whose every SMTP reply takes 50 ms; the People's addresses
(the `normal` behaviour: honest mail hosts, spread over the 500 domains) are verified by
`mapper-emailverify` (its executable on Singer input, no cache, default `concurrency`,
`max_connections_per_mx` 3) and by `py3-validate-email` checking the same addresses (the first
200 of them: it is sequential, so its rate per address does not depend on how many). The figure
is the ratio of the two rates (goal: at least 20x), and the sandbox's peak of simultaneous
connections per mail host must never pass `max_connections_per_mx`.

py3-validate-email runs in `.venv-peers` (see bench_mapper_cached.py) through a small runner given
on its command line: its blacklist updater is switched off (`PY3VE_IGNORE_UPDATER`; there is no
internet), dnspython's default resolver is pointed at the sandbox DNS only (and
`socket.getaddrinfo`, which smtplib uses for the MX host names, answers from it too), and
`smtplib.SMTP.default_port` at the sandbox's SMTP port (the library always connects to the default
port 25). It checks addresses one after another, which is how the library works; wall-clock of each
process is measured, start-up included.

    python benchmarks/bench_mapper_probe.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_mapper_cached import MAPPER, ensure_peers
from mapper_emailverify.engine.config import VerifierConfig

DOMAINS = 500
SMTP_LATENCY = 0.05
MAX_PER_MX = 3
PEER_ADDRESSES = 200  # py3-validate-email checks one address at a time: 200 take about a minute
CONCURRENCY = VerifierConfig.concurrency  # the mapper's default, left as is

PEER_RUNNER = r"""
import json, os, smtplib, sys, time
os.environ["PY3VE_IGNORE_UPDATER"] = "1"  # no blacklist download: loopback only
import dns.resolver
host, port = sys.argv[1].rsplit(":", 1)
resolver = dns.resolver.Resolver(configure=False)
resolver.nameservers = [host]
resolver.port = int(port)
resolver.timeout = resolver.lifetime = 5
dns.resolver.default_resolver = resolver  # resolve() asks only the sandbox DNS
smtplib.SMTP.default_port = int(sys.argv[2])  # the library connects to the default port
import ipaddress, socket
_system_getaddrinfo = socket.getaddrinfo
def _sandbox_getaddrinfo(name, *args, **kwargs):  # smtplib resolves MX names with the OS resolver
    try:
        ipaddress.ip_address(name)
    except ValueError:
        name = resolver.resolve(name, "A")[0].address
    return _system_getaddrinfo(name, *args, **kwargs)
socket.getaddrinfo = _sandbox_getaddrinfo
from validate_email import validate_email
addresses = json.load(sys.stdin)
started = time.perf_counter()
results = [validate_email(a, check_blacklist=False, dns_timeout=5, smtp_timeout=10,
                          smtp_helo_host="verifier.sandbox.example",
                          smtp_from_address="probe@verifier.sandbox.example") for a in addresses]
print(json.dumps({"seconds_in_loop": time.perf_counter() - started, "results": results}))
"""


def ceilings(mail_hosts: int, connections: int, rcpts: int, verifications: int) -> dict[str, Any]:
    """What the settings and the 50 ms replies allow, from the round trips the engine really made.

    Every reply is one round trip and costs SMTP_LATENCY: per connection the banner, EHLO,
    MAIL FROM and QUIT (the engine waits for the server to hang up), plus one per RCPT (the
    catch-all probe included).
    Politeness ceiling: every mail host busy with `max_connections_per_mx` sessions all the time.
    Concurrency ceiling: `concurrency` verifications in flight, each taking its share of round
    trips.
    """
    round_trips = (4 * connections + rcpts) / max(verifications, 1)
    seconds = round_trips * SMTP_LATENCY
    return {
        "mail_hosts_contacted": mail_hosts,
        "smtp_round_trips_per_verification": round(round_trips, 2),
        "politeness_ceiling_per_second": round(mail_hosts * MAX_PER_MX / seconds, 1),
        "concurrency": CONCURRENCY,
        "concurrency_ceiling_per_second": round(CONCURRENCY / seconds, 1),
    }


def run(quick: bool = False) -> dict[str, Any]:
    from cio_sandbox import Sandbox, World

    count = 30 if quick else 600
    repeats = 1 if quick else 3
    bin_dir = ensure_peers()
    world = World(
        seed=21,
        people=count,
        domains=DOMAINS,
        smtp_latency=SMTP_LATENCY,
        case_weights=(("normal", 1),),
    )
    people = [p for p in world.iter_people() if p.email]
    addresses = [p.email for p in people]
    with Sandbox(world) as sb, tempfile.TemporaryDirectory(prefix="bench-mapper-probe-") as tmp:
        work = Path(tmp)
        config = work / "mapper.json"
        report = work / "report.json"
        config.write_text(
            json.dumps(
                sb.mapper_config(
                    smtp_timeout=10, max_connections_per_mx=MAX_PER_MX, report_path=str(report)
                )
            )
        )
        data = work / "people.singer"
        with data.open("w") as out:
            out.write(
                json.dumps(
                    {
                        "type": "SCHEMA",
                        "stream": "people",
                        "key_properties": ["cio_id"],
                        "schema": {
                            "properties": {
                                "cio_id": {"type": "string"},
                                "email": {"type": ["string", "null"]},
                            }
                        },
                    }
                )
                + "\n"
            )
            for p in people:
                out.write(
                    json.dumps(
                        {
                            "type": "RECORD",
                            "stream": "people",
                            "record": {"cio_id": p.cio_id, "email": p.email},
                        }
                    )
                    + "\n"
                )

        ours_runs: list[float] = []
        ours_peak = 0
        for _ in range(
            repeats
        ):  # best of a few short runs: the machine is shared, the peer's long run averages
            sb.obs.reset_counters()
            started = time.perf_counter()
            with data.open("rb") as inp:
                proc = subprocess.run(
                    [str(MAPPER), "--config", str(config)], stdin=inp, capture_output=True
                )
            ours_runs.append(time.perf_counter() - started)
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr.decode()[-2000:])
            ours_peak = max(ours_peak, *sb.obs.smtp_peak_concurrency.values())
        ours_seconds = min(ours_runs)
        ours_connections = sum(sb.obs.smtp_connections.values())
        ours_rcpts = sum(sb.obs.rcpt.values())
        mail_hosts = len(sb.obs.smtp_connections)
        verdicts = [
            json.loads(line)["record"]
            for line in proc.stdout.splitlines()
            if line.startswith(b'{"type":"RECORD"')
        ]
        ours_right = sum(
            (r["EV_Status"], r["EV_SubStatus"])
            in world.person_by_cio_id(r["cio_id"]).truth.accepted
            for r in verdicts
        )
        figures = json.loads(report.read_text())

        sb.obs.reset_counters()
        # sequential: its rate does not depend on how many it checks
        peer_addresses = addresses[:PEER_ADDRESSES]
        started = time.perf_counter()
        peer = subprocess.run(
            [str(bin_dir / "python"), "-c", PEER_RUNNER, sb.dns_nameserver, str(sb.smtp_port)],
            input=json.dumps(peer_addresses).encode(),
            capture_output=True,
        )
        peer_seconds = time.perf_counter() - started
        if peer.returncode != 0:
            raise RuntimeError(peer.stderr.decode()[-2000:])
        peer_out = json.loads(peer.stdout)
        peer_results = peer_out["results"]
        peer_peak = max(sb.obs.smtp_peak_concurrency.values(), default=0)

    expected = [p.truth.status for p in people][: len(peer_addresses)]
    peer_right = sum(
        (r is True and s == "Valid") or (r is False and s == "Invalid")
        for r, s in zip(peer_results, expected, strict=True)
    )
    ours, theirs = len(addresses) / ours_seconds, len(peer_addresses) / peer_seconds
    limits = ceilings(mail_hosts, ours_connections, ours_rcpts, figures["by_source"]["engine"])
    in_loop = figures["verifications_per_second"]
    return {
        "benchmark": "mapper_probe",
        "addresses": len(addresses),
        "py3_validate_email_addresses": len(peer_addresses),
        "domains": DOMAINS,
        "smtp_reply_latency_s": SMTP_LATENCY,
        "mapper_emailverify_verifications_per_second": round(ours, 2),
        "py3_validate_email_verifications_per_second": round(theirs, 2),
        "ratio": round(ours / theirs, 1),
        "goal_ratio": 20,
        "max_connections_per_mx": MAX_PER_MX,
        "peak_connections_per_mail_host": ours_peak,
        "peak_within_limit": ours_peak <= MAX_PER_MX,
        "mapper_smtp_connections": ours_connections,
        "mapper_rcpt_commands": ours_rcpts,
        **limits,
        "fraction_of_politeness_ceiling": round(
            in_loop / limits["politeness_ceiling_per_second"], 4
        ),
        "fraction_of_concurrency_ceiling": round(
            in_loop / limits["concurrency_ceiling_per_second"], 3
        ),
        "mapper_engine_verifications": figures["by_source"]["engine"],
        "in_loop_verifications_per_second": {
            "mapper_emailverify": figures["verifications_per_second"],
            "py3_validate_email": round(len(peer_addresses) / peer_out["seconds_in_loop"], 2),
            "ratio": round(
                figures["verifications_per_second"]
                * peer_out["seconds_in_loop"]
                / len(peer_addresses),
                1,
            ),
        },
        "mapper_verdicts_matching_truth": f"{ours_right}/{len(verdicts)}",
        "py3_validate_email_verdicts_matching_truth": f"{peer_right}/{len(peer_results)}",
        "py3_validate_email_results": dict(Counter(str(r) for r in peer_results)),
        "py3_validate_email_peak_connections_per_mail_host": peer_peak,
        "seconds": {
            "mapper_emailverify": [round(t, 2) for t in ours_runs],
            "py3_validate_email": round(peer_seconds, 2),
        },
        "note": "headline ratio: wall-clock of each process, start-up included "
        "(mapper: best of its runs); "
        "in_loop: the mapper's own figure from report_path vs the peer's loop only; "
        "py3-validate-email is sequential by design",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 addresses instead of 600")
    print(json.dumps(run(parser.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
