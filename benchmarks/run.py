"""The benchmark suite (issue #8): every benchmark against the sandbox, then one table of figures
and goals.

    make bench                                  # the full suite (about 8 minutes),
                                                # writes benchmarks/results.json
    .venv/bin/python benchmarks/run.py --quick  # each benchmark on a small input
                                                # (what the smoke test runs)
    .venv/bin/python benchmarks/run.py --big    # also the whole job over 1,000,000 People
                                                # (memory; +10 minutes)
    .venv/bin/python benchmarks/run.py --only target --only job
                                                # updates those rows of results.json

Each figure that matters is a ratio measured side by side in the same run (against a peer) or a
fraction of a ceiling the sandbox enforces; absolute rates are printed for context only. The table
goes to stdout as Markdown (it is pasted into benchmarks/README.md); the full results, with every
benchmark's own figures, go to benchmarks/results.json (results-quick.json for --quick).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_hostile
import bench_incremental
import bench_job
import bench_mapper_cached
import bench_mapper_probe
import bench_providers
import bench_rerun
import bench_sessions
import bench_tap
import bench_target
import bench_workers

HERE = Path(__file__).resolve().parent

BENCHMARKS: dict[str, Callable[..., dict[str, Any]]] = {
    "tap": bench_tap.run,
    "mapper_cached": bench_mapper_cached.run,
    "mapper_probe": bench_mapper_probe.run,
    "target": bench_target.run,
    "job": bench_job.run,
    "rerun": bench_rerun.run,
    "hostile": bench_hostile.run,
    "incremental": bench_incremental.run,
    "providers": bench_providers.run,
    "sessions": bench_sessions.run,
    "workers": bench_workers.run,
}


@dataclass
class Row:
    figure: str
    value: str
    goal: str
    peer: str = "—"
    met: bool | None = None  # None: reported, no goal

    @property
    def met_text(self) -> str:
        return "—" if self.met is None else ("yes" if self.met else "**no**")


def tap_rows(r: dict[str, Any]) -> list[Row]:
    return [
        Row(
            "1. Tap: People/s at 200 ms latency, 10 req/s",
            f"{r['people_per_second']:.0f}/s = {r['fraction_of_ceiling']:.2f} of the "
            f"{r['ceiling_people_per_second']:.0f}/s ceiling",
            "≥ 0.90 of ceiling",
            met=r["fraction_of_ceiling"] >= 0.9,
        ),
        Row(
            "1. Tap: 429s received",
            str(r["rate_limited_429_received"]),
            "0",
            met=r["rate_limited_429_received"] == 0,
        ),
    ]


def mapper_cached_rows(r: dict[str, Any]) -> list[Row]:
    return [
        Row(
            f"2. Mapper, cached path: records/s ({r['records']:,} records)",
            f"{r['mapper_emailverify_records_per_second']:.0f}/s",
            "≥ 1.0x meltano-map-transform (aim 1.5x)",
            f"{r['ratio']:.2f}x meltano-map-transform "
            f"({r['meltano_map_transform_records_per_second']:.0f}/s)",
            met=r["ratio"] >= r["goal_ratio"],
        ),
        *(
            [
                Row(
                    "2. Mapper, cached path with the cache in PostgreSQL (`cache_url`), same run",
                    f"{pg['records_per_second']:.0f}/s = {pg['vs_sqlite']:.2f}x SQLite "
                    "(`cache_path`)",
                    "reported (issue 21)",
                )
            ]
            if (pg := r.get("postgres_cache", {})).get("measured")
            else []
        ),
    ]


def mapper_probe_rows(r: dict[str, Any]) -> list[Row]:
    in_loop = r["in_loop_verifications_per_second"]["mapper_emailverify"]
    return [
        Row(
            f"3. Mapper, probing: verifications/s ({r['addresses']} addresses, "
            f"{r['domains']} domains, 50 ms per SMTP reply)",
            f"{r['mapper_emailverify_verifications_per_second']:.1f}/s (process); "
            f"{in_loop:.0f}/s in loop",
            "≥ 20x py3-validate-email",
            f"{r['ratio']:.1f}x py3-validate-email "
            f"({r['py3_validate_email_verifications_per_second']:.2f}/s); "
            f"in loop {r['in_loop_verifications_per_second']['ratio']:.1f}x",
            met=r["ratio"] >= r["goal_ratio"],
        ),
        Row(
            "3. Mapper, probing: share of the ceilings (in loop)",
            f"{r['fraction_of_politeness_ceiling']:.3f} of "
            f"{r['politeness_ceiling_per_second']:.0f}/s "
            f"({r['mail_hosts_contacted']} hosts x {r['max_connections_per_mx']} / "
            f"({r['smtp_round_trips_per_verification']} round trips x 50 ms)); "
            f"{r['fraction_of_concurrency_ceiling']:.2f} of "
            f"{r['concurrency_ceiling_per_second']:.0f}/s "
            f"(concurrency {r['concurrency']})",
            "reported",
        ),
        Row(
            "3. Mapper, probing: peak connections per mail host",
            str(r["peak_connections_per_mail_host"]),
            f"≤ {r['max_connections_per_mx']} (max_connections_per_mx)",
            met=r["peak_within_limit"],
        ),
    ]


def target_rows(r: dict[str, Any]) -> list[Row]:
    loop, lat = r["loopback"], r["latency_20ms"]
    return [
        Row(
            "4. Target: records/s into the Pipelines fake "
            f"({r['identifies']:,} identifies, loopback)",
            f"{loop['target_records_per_second']:.0f}/s",
            "≥ 2x official client",
            f"{loop['ratio']:.2f}x customerio-cdp-analytics "
            f"({loop['official_client_records_per_second']:.0f}/s, "
            f"landed {loop['official_client_landed']:,}/{r['identifies']:,})",
            met=loop["ratio"] is not None and loop["ratio"] >= r["goal_ratio"],
        ),
        Row(
            "4. Target: the same with 20 ms per Pipelines request",
            f"{lat['target_records_per_second']:.0f}/s",
            "reported",
            f"{lat['ratio']:.2f}x customerio-cdp-analytics "
            f"({lat['official_client_records_per_second']:.0f}/s)",
        ),
    ]


def job_rows(r: dict[str, Any]) -> list[Row]:
    job = r["job"]
    rows = [
        Row(
            f"5. Whole job: People/s, `meltano run`, {job['people']:,} People, 5 % new addresses",
            f"{job['people_per_second']:.0f}/s = {job['fraction_of_tap_ceiling']:.2f} of the tap's "
            f"{job['tap_ceiling_people_per_second']:.0f}/s ceiling ({job['seconds']:.0f} s)",
            "reported (the App API's 10 req/s bounds it)",
        ),
        memory_row(job, r["memory_goal_mb"]),
    ]
    if "landing_check_requests" in job:
        rows.append(
            Row(
                "5. Whole job: the target's landing check (App API reads after the last write)",
                f"{job['landing_check_requests']} of the job's {job['app_api_requests']} App API "
                "requests",
                "reported (a sample of 50 read back)",
            )
        )
    big = r.get("big")
    if big:
        note = f" (from the --big run of {big.get('date', '?')})" if big.get("carried") else ""
        row = memory_row(big, r["memory_goal_mb"], note)
        growth = {
            name: mb / job["peak_rss_mb"][name]
            for name, mb in big["peak_rss_mb"].items()
            if name != "meltano" and job["peak_rss_mb"].get(name)
        }
        row.value += f"; vs {job['people']:,}: " + ", ".join(
            f"{name.split('-')[0]} x{ratio:.2f}" for name, ratio in growth.items()
        )
        row.met = row.met and all(ratio < 1.25 for ratio in growth.values())  # flat: within 25 %
        rows.append(row)
    else:
        rows.append(
            Row(
                "5. Whole job: peak RSS per process, 1,000,000 People",
                "not run: use --big",
                f"< {r['memory_goal_mb']} MB, flat",
            )
        )
    return rows


def memory_row(job: dict[str, Any], goal_mb: int, note: str = "") -> Row:
    peaks = job["peak_rss_mb"]
    shown = ", ".join(f"{name.split('-')[0]} {mb:.0f}" for name, mb in peaks.items())
    return Row(
        f"5. Whole job: peak RSS per process (MB), {job['people']:,} People{note}",
        shown,
        f"< {goal_mb} MB, flat",
        met=max(peaks.values()) < goal_mb,
    )


def rerun_rows(r: dict[str, Any]) -> list[Row]:
    return [
        Row(
            f"6. Re-run over {r['people']:,} unchanged People: App API requests",
            str(r["app_api_requests"]),
            "reported (reading the workspace)",
        ),
        Row(
            "6. Re-run: SMTP connections",
            str(r["smtp_connections"]),
            "0",
            met=r["smtp_connections"] == 0,
        ),
        Row(
            "6. Re-run: Pipelines calls",
            str(r["pipelines_calls"]),
            "0",
            met=r["pipelines_calls"] == 0,
        ),
    ]


def hostile_rows(r: dict[str, Any]) -> list[Row]:
    t = r["throughput"]
    cases = {c["case"]: c for c in r["per_address"]}
    return [
        Row(
            f"7. Mapper: ordinary verifications/s with {t['tarpits']} tarpits among "
            f"{t['ordinary']} addresses (5%)",
            f"{max(t['rates_with_tarpits']):.0f}/s vs {max(t['rates_alone']):.0f}/s alone",
            "≥ 0.80 of the rate alone",
            f"{t['ratio']:.2f}x",
            met=t["ratio"] >= 0.8,
        ),
        Row(
            "7. Mapper: one hostile address (30 silent MX / 100 A records / replies just under "
            "the 1 s timeout / endless EHLO at 5 s)",
            " / ".join(
                f"{cases[c]['seconds']:.1f} s, {cases[c]['connections']} conn."
                if c in cases
                else "-"
                for c in bench_hostile.CASES
            )
            + f"; peak RSS {max(c['peak_rss_mb'] for c in cases.values()):.0f} MB",
            "≤ verification_deadline (3 s) each",
            met=all(c["seconds"] <= 3.5 for c in cases.values()),
        ),
    ]


def incremental_rows(r: dict[str, Any]) -> list[Row]:
    new, again, full = r["incremental_run"], r["second_incremental_run"], r["full_run"]
    return [
        Row(
            f"8. Incremental: {r['new_people']} new People among {r['people']:,}, "
            "verify-new-people App API requests",
            f"{new['app_api_requests']} ({new['app_api_requests_reading']} reading, "
            f"{new['app_api_requests_landing_check']} landing check)",
            f"≤ {r['app_api_request_budget']}",
            met=new["app_api_requests"] <= r["app_api_request_budget"],
        ),
        Row(
            "8. Incremental: wall time vs the daily job over the same workspace",
            f"{new['seconds']:.1f} s vs {full['seconds']:.1f} s = {r['wall_ratio']:.3f}",
            "≤ 0.05",
            met=r["wall_ratio"] <= 0.05,
        ),
        Row(
            "8. Incremental: the same job again right after",
            f"{again['app_api_requests']} App API requests, "
            f"{again['smtp_connections']} SMTP connections",
            "≤ 3, 0",
            met=again["app_api_requests"] <= 3 and again["smtp_connections"] == 0,
        ),
    ]


def providers_rows(r: dict[str, Any]) -> list[Row]:
    day1, day2 = r["day1"], r["day2"]
    people = sum(row["people"] for row in r["accuracy"].values())
    correct = sum(row["correct"] for row in r["accuracy"].values())
    mixed = sum(day["servers"]["mixed_domain_rejections"] for day in (day1, day2))
    second = sum(day["servers"]["outlook_second_rcpt_rejections"] for day in (day1, day2))
    greylisted = day1["engine"].get("greylisted", 0) + day2["engine"].get("greylisted", 0)
    resolved = day1["engine"].get("greylist_resolved", 0) + day2["engine"].get(
        "greylist_resolved", 0
    )
    return [
        Row(
            f"9. Providers: verdicts the ground truth allows, {people:,} addresses on 11 provider "
            "look-alikes",
            f"{correct:,} of {people:,}; false Invalid {r['false_invalid']}, false Valid on "
            f"Yahoo/Mail.ru {r['false_valid_unverifiable']}",
            "0 false Invalid, 0 false Valid on unverifiable providers",
            met=r["false_invalid"] == 0 and r["false_valid_unverifiable"] == 0,
        ),
        Row(
            "9. Providers: greylisted addresses resolved within the run",
            f"{resolved} of {greylisted}",
            "all (delays within greylist_max_wait)",
            met=resolved == greylisted,
        ),
        Row(
            "9. Providers: catch-all probes, day 1 / day 2 (domain knowledge in cache_path)",
            f"{day1['engine'].get('catch_all_probes', 0)} / "
            f"{day2['engine'].get('catch_all_probes', 0)} "
            f"({day2['engine'].get('catch_all_cached', 0)} domains known from day 1; "
            f"{day1['engine'].get('catch_all_skipped', 0)} skipped by provider rule)",
            "fewer on day 2",
            met=day2["engine"].get("catch_all_probes", 0)
            < day1["engine"].get("catch_all_probes", 0),
        ),
        Row(
            "9. Providers: transactions mixing domains / Outlook.com second RCPTs (servers' count)",
            f"{mixed} / {second}",
            "0 / 0",
            met=mixed == 0 and second == 0,
        ),
    ]


def sessions_rows(r: dict[str, Any]) -> list[Row]:
    speeds = "; ".join(
        f"{run['people_per_second']:.0f}/s at {int(cap):,} rcpt/min per host "
        f"({run['x_issue_baseline']:.1f}x)"
        for cap, run in r["by_rate_cap"].items()
    )
    return [
        Row(
            f"10. Whole job on a world of few large mail hosts ({r['people']:,} People, "
            f"nothing cached): People/s, x the {r['issue_baseline_people_per_second']:.0f}/s "
            "when issue 19 was filed",
            f"{speeds} (App API ceiling {r['app_api_ceiling_people_per_second']:.0f}/s)",
            "4x (issue 19)",
            met=max(run["x_issue_baseline"] for run in r["by_rate_cap"].values()) >= 4,
        ),
        Row(
            "10. Recipients per SMTP session; peak connections per host; peak recipients per "
            "host in 60 s",
            f"{r['rcpts_per_session']:.1f}; {r['peak_connections_per_host']} "
            f"(cap {r['max_connections_per_mx']}); {r['peak_rcpt_per_minute_per_host']} "
            f"(cap {r['max_rcpt_per_minute_per_mx']})",
            ">= 10; <= caps",
            met=r["rcpts_per_session"] >= 10
            and r["peak_connections_per_host"] <= r["max_connections_per_mx"]
            and r["peak_rcpt_per_minute_per_host"] <= r["max_rcpt_per_minute_per_mx"],
        ),
        Row(
            "10. Accuracy, false Invalid",
            f"{r['accuracy']:.3f}, {r['false_invalid']}",
            "1.0, 0",
            met=r["false_invalid"] == 0,
        ),
    ]


def workers_rows(r: dict[str, Any]) -> list[Row]:
    ways = r["ways"]
    one, shared, apart = (
        ways["one_worker"],
        ways["three_workers_one_ip"],
        ways["three_workers_three_ips"],
    )
    caps = (
        f"caps {r['max_connections_per_mx']} connections, {r['max_rcpt_per_minute_per_mx']:,}/min"
    )
    return [
        Row(
            f"11. Workers sharing cache_url ({r['addresses']:,} addresses, 80 % on 3 mail hosts, "
            f"{caps}): addresses/s of 3 workers on one egress IP, x one worker",
            f"{shared['addresses_per_second']:.1f}/s vs {one['addresses_per_second']:.1f}/s = "
            f"**{shared['x_one_worker']:.2f}x**; peak connections per host "
            f"{shared['peak_connections_per_host']}, peak recipients per host in 60 s "
            f"{shared['peak_rcpt_per_minute_per_host']:,}",
            "about 1x, within the caps",
            met=shared["peak_connections_per_host"] <= r["max_connections_per_mx"]
            and shared["peak_rcpt_per_minute_per_host"] <= r["max_rcpt_per_minute_per_mx"],
        ),
        Row(
            "11. The same 3 workers told they are on 3 egress IPs (`egress_ip`), x one worker",
            f"{apart['addresses_per_second']:.1f}/s = **{apart['x_one_worker']:.2f}x**; peak "
            f"connections per host {apart['peak_connections_per_host']} (3 IPs' together)",
            "reported",
        ),
    ]


def rows_for(name: str, result: dict[str, Any]) -> list[Row]:
    if "error" in result:
        return [Row(f"{name}: FAILED", result["error"].splitlines()[-1][:120], "runs", met=False)]
    if name == "job":
        return job_rows(result)
    return {
        "tap": tap_rows,
        "mapper_cached": mapper_cached_rows,
        "mapper_probe": mapper_probe_rows,
        "target": target_rows,
        "rerun": rerun_rows,
        "hostile": hostile_rows,
        "incremental": incremental_rows,
        "providers": providers_rows,
        "sessions": sessions_rows,
        "workers": workers_rows,
    }[name](result)


def markdown(rows: list[Row]) -> str:
    lines = ["| figure | value | goal | peer ratio | met |", "|---|---|---|---|---|"]
    lines += [f"| {r.figure} | {r.value} | {r.goal} | {r.peer} | {r.met_text} |" for r in rows]
    return "\n".join(lines)


def previous_big_run(path: Path) -> dict[str, Any] | None:
    """The last --big figure, carried into the table of runs without --big (it takes 10 minutes)."""
    try:
        data = json.loads(path.read_text())
        big = data["results"]["job"].get("big")
        return {**big, "date": big.get("date", data.get("date"))} if big else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def main(argv: list[str] | None = None) -> int:
    # The docstring's first paragraph (argparse refills it), not just its first wrapped line.
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="small inputs: checks that each benchmark runs"
    )
    parser.add_argument(
        "--big", action="store_true", help="also the 1,000,000-People job (peak memory)"
    )
    parser.add_argument("--only", action="append", choices=list(BENCHMARKS), help="run only these")
    parser.add_argument("--output", type=Path, help="results file [benchmarks/results.json]")
    parser.add_argument("--table", action="store_true", help="only print the results file's table")
    args = parser.parse_args(argv)
    output = args.output or HERE / ("results-quick.json" if args.quick else "results.json")
    if args.table:
        saved = json.loads(output.read_text())["results"]
        print(markdown([row for name, result in saved.items() for row in rows_for(name, result)]))
        return 0
    previous_big = None if args.quick else previous_big_run(HERE / "results.json")
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")

    results: dict[str, Any] = {}
    started = time.monotonic()
    for name in args.only or BENCHMARKS:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            kwargs = {"big": True} if name == "job" and args.big else {}
            results[name] = BENCHMARKS[name](args.quick, **kwargs)
            if name == "job" and "big" in results[name]:
                results[name]["big"]["date"] = today
            elif name == "job" and previous_big:
                results[name]["big"] = {**previous_big, "carried": True}
        except Exception:  # one broken benchmark must not hide the others' figures
            results[name] = {"error": traceback.format_exc()}
            print(results[name]["error"], file=sys.stderr)
        results[name]["bench_seconds"] = round(time.monotonic() - t0, 1)
        print(f"[bench] {name}: {results[name]['bench_seconds']} s", file=sys.stderr, flush=True)

    if (
        args.only and not args.quick
    ):  # a partial run updates the last full results instead of replacing them
        with contextlib.suppress(OSError, ValueError, KeyError):
            results = {**json.loads(output.read_text())["results"], **results}
        results = {name: results[name] for name in BENCHMARKS if name in results}
    rows = [row for name, result in results.items() for row in rows_for(name, result)]
    total = round(time.monotonic() - started, 1)
    print(f"\nBenchmarks of {today} ({'quick' if args.quick else 'full'}, {total:.0f} s)\n")
    print(markdown(rows))
    output.write_text(
        json.dumps(
            {
                "date": today,
                "quick": args.quick,
                "seconds": total,
                "rows": [asdict(r) for r in rows],
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nFull results: {output}")
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
