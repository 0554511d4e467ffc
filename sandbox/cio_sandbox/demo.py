"""The README's demo: the real `meltano run` job against the sandbox, twice.

The first run ends with a report a marketer can read (also drawn as an HTML page by the mapper's
`emailverify-report`, with what the target wrote); the second shows what a re-run leaves alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .report import RunReport, describe_world, evaluate, render
from .sandbox import Sandbox
from .world import World

JOB = ["run", "tap-customerio-people", "emailverify", "target-customerio-ev"]
NEW_SIGNUPS = 5
NEW_PEOPLE_STATE = "sandbox:tap-customerio-people--new-to-target-customerio-ev"


def project_root() -> Path:
    """The repository holding meltano.yml (the demo runs from a checkout)."""
    here = Path.cwd()
    for candidate in (here, *here.parents, *Path(__file__).resolve().parents):
        if (candidate / "meltano.yml").exists():
            return candidate
    raise FileNotFoundError("meltano.yml not found: run the demo from the repository (make demo)")


def meltano_install(sys_dir: Path, plugins: list[str], root: Path | None = None) -> None:
    """`meltano install` of `plugins` into the Meltano system directory `sys_dir` (tests give
    each module a private one, so they never touch or race with a developer's `.meltano/`)."""
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "MELTANO_SYS_DIR_ROOT": str(sys_dir),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    done = subprocess.run(
        [str(Path(bin_dir) / "meltano"), "install", *plugins],
        cwd=root or project_root(),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"meltano install failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")


def landing_line(log: Path, since: int) -> str:
    """What the target's landing check found in the run logged after byte `since`."""
    with log.open(encoding="utf-8", errors="replace") as handle:
        handle.seek(since)
        found = [line.split("landing: ", 1)[1].strip() for line in handle if "landing: " in line]
    return f"Target: landing: {found[-1]}" if found else "Target: no landing check line found."


def meltano_env(sb: Sandbox, report_path: Path) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "MELTANO_ENVIRONMENT": "sandbox",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        "CIO_SANDBOX_APP_API_KEY": sb.keys.app_api_key,
        "CIO_SANDBOX_APP_API_URL": sb.app_api_url,
        "CIO_SANDBOX_REGION": sb.world.region,
        "CIO_SANDBOX_DNS": sb.dns_nameserver,
        "CIO_SANDBOX_SMTP_PORT": str(sb.smtp_port),
        "CIO_SANDBOX_PIPELINES_API_KEY": sb.keys.pipelines_api_key,
        "CIO_SANDBOX_PIPELINES_URL": sb.pipelines_url,
        "MAPPER_EMAILVERIFY_REPORT_PATH": str(report_path),
    }


def meltano(args: list[str], env: dict[str, str], root: Path, log: Path) -> float:
    """Run one meltano command, its log to a file; returns seconds taken.

    Raises with the log's tail when the command fails.
    """
    started = time.monotonic()
    with log.open("a") as handle:
        result = subprocess.run(
            [str(Path(sys.executable).parent / "meltano"), *args],
            cwd=root,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-25:])
        raise RuntimeError(
            f"`meltano {' '.join(args)}` failed (exit {result.returncode}); log {log}:\n{tail}"
        )
    return time.monotonic() - started


def html_report(work: Path) -> str:
    """The first run's page: the mapper's JSON report and the target's, drawn by
    `emailverify-report`; one line saying where it is (or why there is none)."""
    command = Path(sys.executable).parent / "emailverify-report"
    page = work / "report.html"
    result = subprocess.run(
        [
            str(command),
            "--mapper-report",
            str(work / "mapper-report-1.json"),
            "--target-report",
            str(work / "target-report-1.json"),
            "--html",
            str(page),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return f"HTML report not drawn: {(result.stderr or result.stdout).strip()[-300:]}"
    return f"Report to look at: {page} (open it in a browser; it needs no network)."


def mapper_summary(report_path: Path) -> dict[str, Any]:
    try:
        summary: dict[str, Any] = json.loads(report_path.read_text())
        return summary
    except (OSError, ValueError):
        return {}


def describe_mapper(summary: dict[str, Any]) -> str:
    """One line on where the mapper's verdicts came from."""
    if not summary:
        return ""
    src = summary.get("by_source", {})
    return (
        f"Mapper: {summary.get('records', 0)} People read; {src.get('engine', 0)} verified now, "
        f"{src.get('fresh', 0)} already fresh (skipped), {src.get('cache', 0)} from the cache, "
        f"{src.get('local', 0)} without an address; "
        f"{summary.get('verifications_per_second', 0):.0f} verifications/s."
    )


def incremental_pass(
    sb: Sandbox, env: dict[str, str], root: Path, log: Path, work: Path
) -> tuple[RunReport, bool]:
    """A few People sign up; the `verify-new-people` job reads and verifies only them."""
    added = sb.add_people(NEW_SIGNUPS)
    print(
        f"\n{len(added)} People sign up. Running the incremental job: meltano run "
        "verify-new-people (filter: unverified, People only) ...",
        flush=True,
    )
    meltano(["state", "clear", "--force", NEW_PEOPLE_STATE], env, root, log)
    sb.obs.reset_traffic()
    env["MAPPER_EMAILVERIFY_REPORT_PATH"] = str(work / "mapper-report-3.json")
    env["TARGET_CUSTOMERIO_EV_REPORT_PATH"] = str(work / "target-report-3.json")
    mark = log.stat().st_size
    seconds = meltano(["run", "verify-new-people"], env, root, log)
    snap = sb.obs.snapshot()
    summary = mapper_summary(work / "mapper-report-3.json")
    written = set(sb.obs.writes)
    new_ids = {person.cio_id for person in added}
    only_them = summary.get("records") == len(added) and written <= new_ids
    print(
        f"Incremental run: {seconds:.1f} s, {sb.obs.requests_to('app')} App API requests, "
        f"{snap['smtp_connections']} SMTP connections, {snap['writes']} identify calls landed."
    )
    print(describe_mapper(summary))
    print(
        f"Read and verified: {summary.get('records', 0)} People, "
        + ("only the new sign-ups." if only_them else f"expected only the {len(added)} new ones!")
    )
    print(landing_line(log, mark))
    report = evaluate(sb.world, sb.obs.landed_copy(), sb.obs.writes)
    print(f"Workspace now: coverage {report.coverage:.0%}, {report.false_invalid} false Invalid.")
    return report, only_them


def run_demo(world: World) -> int:
    root = project_root()
    sys_dir = Path(os.environ.get("MELTANO_SYS_DIR_ROOT", root / ".meltano"))
    work = sys_dir / "demo"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log = work / "meltano.log"
    started = time.monotonic()
    with Sandbox(world) as sb:
        print(describe_world(world))
        print(f"\nSandbox up on loopback in {time.monotonic() - started:.1f} s.")
        env = meltano_env(sb, work / "mapper-report-1.json")
        # The first run's reports, drawn as one page after it (`html_report`).
        env["MAPPER_EMAILVERIFY_REPORT_HTML_PATH"] = str(work / "mapper-report-1.html")
        env["TARGET_CUSTOMERIO_EV_REPORT_PATH"] = str(work / "target-report-1.json")
        # A cold start each demo.
        env["MAPPER_EMAILVERIFY_CACHE_PATH"] = str(work / "emailverify-cache.sqlite")
        print("Installing the three plugins into Meltano's virtual environments ...", flush=True)
        meltano(
            ["install", "tap-customerio-people", "mapper-emailverify", "target-customerio-ev"],
            env,
            root,
            log,
        )
        meltano(
            ["state", "clear", "--force", "sandbox:tap-customerio-people-to-target-customerio-ev"],
            env,
            root,
            log,
        )
        print(
            "Running: meltano run tap-customerio-people emailverify target-customerio-ev",
            flush=True,
        )
        mark = log.stat().st_size
        first = meltano(JOB, env, root, log)
        landed = sb.obs.landed_copy()
        report = evaluate(world, landed, sb.obs.writes)
        snap = sb.obs.snapshot()
        print(
            f"\nFirst run: {first:.1f} s, {sb.obs.requests_to('app')} App API requests, "
            f"{snap['smtp_connections']} SMTP connections, {snap['writes']} identify calls landed."
        )
        print(describe_mapper(mapper_summary(work / "mapper-report-1.json")))
        print(landing_line(log, mark))
        print(html_report(work) + "\n")
        print(render(report))
        env.pop("MAPPER_EMAILVERIFY_REPORT_HTML_PATH")
        env["TARGET_CUSTOMERIO_EV_REPORT_PATH"] = str(work / "target-report-2.json")

        print(
            "\nRunning the same job again (fresh People are skipped, unchanged People are not "
            "rewritten) ...",
            flush=True,
        )
        sb.obs.reset_traffic()
        env["MAPPER_EMAILVERIFY_REPORT_PATH"] = str(work / "mapper-report-2.json")
        mark = log.stat().st_size
        second = meltano(JOB, env, root, log)
        snap = sb.obs.snapshot()
        print(
            f"Second run: {second:.1f} s, {snap['smtp_connections']} SMTP connections, "
            f"{snap['writes']} identify calls landed, {snap['dns_queries']} DNS queries."
        )
        print(describe_mapper(mapper_summary(work / "mapper-report-2.json")))
        print(landing_line(log, mark))
        report, only_new = incremental_pass(sb, env, root, log, work)
    print(f"\nSandbox stopped. Whole demo: {time.monotonic() - started:.0f} s. Logs: {log}")
    return 0 if report.coverage == 1.0 and report.false_invalid == 0 and only_new else 1
