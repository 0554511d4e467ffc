"""The Dagster example in orchestration/ (issue 21, item 3), run as its README says.

Dagster itself runs `verify_people` (`dagster job execute`, the multiprocess executor) with three
partitions at once against the sandbox, the mapper's verdict cache and per-host caps in one
PostgreSQL database: every Person is verified and lands exactly once, each partition reads its own
share, the three steps overlap in time (Dagster's event log), no mail host sees more connections at
once than one worker's `max_connections_per_mx`, and a second pass is answered from the shared
cache without one SMTP connection. Then `verify_new_people` verifies the new sign-ups.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import dagster as dg
import pytest
import yaml
from cio_sandbox import Sandbox, World
from cio_sandbox.demo import meltano_env, meltano_install
from cio_sandbox.postgres import new_database
from cio_sandbox.report import evaluate
from cio_sandbox.world import SHARED_HOST_CASE_WEIGHTS
from tap_customerio_people.partition import partition_of

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MELTANO = str(BIN / "meltano")
DEFINITIONS = ROOT / "orchestration" / "emailverify_dagster" / "definitions.py"
PLUGINS = ["tap-customerio-people", "mapper-emailverify", "target-customerio-ev"]
# orchestration/README.md's commands, as written there (tests/test_readme_commands.py, ELSEWHERE).
VALIDATE = (
    ".venv/bin/dagster definitions validate -f orchestration/emailverify_dagster/definitions.py"
)
VERIFY_PEOPLE = ".venv/bin/dagster job execute -f orchestration/emailverify_dagster/definitions.py -j verify_people"  # noqa: E501
VERIFY_NEW_PEOPLE = ".venv/bin/dagster job execute -f orchestration/emailverify_dagster/definitions.py -j verify_new_people"  # noqa: E501
PARTITIONS = 3
#: Each worker's own cap: three workers that did not share it could open 6 at once to a host (they
#: do on this world, with `cache_path` instead of `cache_url`).
MAX_CONNECTIONS = 2


def load_definitions() -> ModuleType:
    """The module from its path, as `dagster dev -f` loads it."""
    spec = importlib.util.spec_from_file_location("emailverify_dagster_definitions", DEFINITIONS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_readme(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A README command line, its `.venv/bin/` program taken from this venv."""
    argv = shlex.split(command)
    argv[0] = str(BIN / Path(argv[0]).name)
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def output(done: subprocess.CompletedProcess[str]) -> str:
    return (done.stdout + done.stderr)[-6000:]


@pytest.fixture(scope="module")
def meltano_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private Meltano system dir with the project's plugins installed once for the module."""
    sys_dir = tmp_path_factory.mktemp("meltano") / ".meltano"
    meltano_install(sys_dir, [*PLUGINS, "tap-customerio-people--new"], ROOT)
    return sys_dir


def test_the_definitions_load_with_both_jobs_and_their_schedules(tmp_path: Path) -> None:
    defs = load_definitions().defs
    assert isinstance(defs, dg.Definitions)
    people = defs.resolve_job_def("verify_people")
    assert (
        people.executor_def.name == "multiprocess"
    )  # the partitions run in processes of their own
    assert {node.name for node in people.nodes} == {"plan_partitions", "run_partition"}
    assert {node.name for node in defs.resolve_job_def("verify_new_people").nodes} == {
        "run_verify_new_people"
    }
    daily = defs.resolve_schedule_def("verify_people_daily")
    every_10 = defs.resolve_schedule_def("verify_new_people_every_10_minutes")
    assert (daily.job_name, every_10.job_name) == ("verify_people", "verify_new_people")
    assert every_10.cron_schedule == "*/10 * * * *"
    # The same cadence as meltano.yml's own schedules (`meltano schedule run ...`).
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    intervals = {s["job"]: s["interval"] for s in project["schedules"]}
    assert intervals == {
        "verify-people": daily.cron_schedule,
        "verify-new-people": every_10.cron_schedule,
    }

    (tmp_path / "dagster").mkdir()
    done = run_readme(VALIDATE, {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster")})
    assert done.returncode == 0, output(done)
    assert "Validation successful" in output(done)


def test_each_partition_gets_its_share_system_dir_and_report_files(tmp_path: Path) -> None:
    module = load_definitions()
    main = tmp_path / ".meltano"
    environ = {
        "EV_MELTANO_PROJECT_DIR": str(ROOT),
        "MELTANO_SYS_DIR_ROOT": str(main),
        "MAPPER_EMAILVERIFY_CACHE_URL": "postgresql://ev@127.0.0.1:5432/ev",
        "MAPPER_EMAILVERIFY_REPORT_PATH": str(tmp_path / "mapper.json"),
    }
    env = module.partition_env(1, 3, environ)
    assert env["TAP_CUSTOMERIO_PEOPLE_PARTITION"] == "1/3"
    assert env["MAPPER_EMAILVERIFY_REPORT_PATH"] == str(tmp_path / "mapper-partition-1-of-3.json")
    # meltano.yml's cache_path would clash with cache_url: emptied, unless set on purpose.
    assert env["MAPPER_EMAILVERIFY_CACHE_PATH"] == ""
    assert (
        module.run_env({**environ, "MAPPER_EMAILVERIFY_CACHE_PATH": "x"})[
            "MAPPER_EMAILVERIFY_CACHE_PATH"
        ]
        == "x"
    )
    # Its own system dir (run files), the shared system database (state, running pipelines).
    assert env["MELTANO_SYS_DIR_ROOT"] == str(main / "partitions" / "partition-1-of-3")
    assert env["MELTANO_DATABASE_URI"] == f"sqlite:///{main.resolve() / 'meltano.db'}"
    given = {**environ, "MELTANO_DATABASE_URI": "postgresql+psycopg://m@db/meltano"}
    assert (
        module.partition_env(0, 3, given)["MELTANO_DATABASE_URI"] == given["MELTANO_DATABASE_URI"]
    )
    (main / "extractors").mkdir(parents=True)
    own = module.partition_sys_dir(1, 3, environ)
    assert (own / "extractors").resolve() == (main / "extractors").resolve()
    assert module.partitions_from_env({}) == 3
    with pytest.raises(ValueError, match="EV_PARTITIONS"):
        module.partitions_from_env({"EV_PARTITIONS": "0"})


def step_windows(dagster_home: Path) -> dict[str, tuple[float, float]]:
    """(start, end) of each step of the latest run, from Dagster's event log."""
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        run = instance.get_runs(limit=1)[0]
        assert run.status == dg.DagsterRunStatus.SUCCESS
        starts: dict[str, float] = {}
        ends: dict[str, float] = {}
        types = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}
        for entry in instance.all_logs(run.run_id, of_type=types):
            assert entry.step_key is not None and entry.dagster_event is not None
            kind = entry.dagster_event.event_type
            (starts if kind == dg.DagsterEventType.STEP_START else ends)[entry.step_key] = (
                entry.timestamp
            )
        return {key: (starts[key], ends[key]) for key in starts}
    finally:
        instance.dispose()


def mapper_reports(folder: Path) -> list[dict[str, Any]]:
    return [
        json.loads((folder / f"mapper-partition-{i}-of-{PARTITIONS}.json").read_text())
        for i in range(PARTITIONS)
    ]


def test_three_partitions_at_once_verify_everyone_once_within_shared_caps_then_from_the_cache(
    meltano_dir: Path, postgres_url: str, tmp_path: Path
) -> None:
    world = World(
        seed=21,
        people=300,
        case_weights=SHARED_HOST_CASE_WEIGHTS,  # 80 % of the People on three shared mail hosts
        shared_domains=30,
        smtp_latency=0.1,  # sessions last long enough for the workers' to overlap
    )
    cache_url = new_database(postgres_url)
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    with Sandbox(world) as sb:
        env = {
            **meltano_env(sb, first / "mapper.json"),
            "MELTANO_SYS_DIR_ROOT": str(meltano_dir),
            "DAGSTER_HOME": str(dagster_home),
            "EV_PARTITIONS": str(PARTITIONS),
            "MAPPER_EMAILVERIFY_CACHE_URL": cache_url,
            "MAPPER_EMAILVERIFY_MAX_CONNECTIONS_PER_MX": str(MAX_CONNECTIONS),
            # Records' own EV_* fields never answer: every verdict comes from the engine (first
            # pass) or from the shared cache (second pass).
            "MAPPER_EMAILVERIFY_REVERIFY_AFTER_DAYS": "0",
            "TARGET_CUSTOMERIO_EV_REPORT_PATH": str(first / "target.json"),
        }
        env.pop("MAPPER_EMAILVERIFY_CACHE_PATH", None)
        env.pop("MAPPER_EMAILVERIFY_EGRESS_IP", None)  # one egress IP: the caps are shared

        # -- first pass: three partitions at once, each Person verified and written once ------
        done = run_readme(VERIFY_PEOPLE, env)
        assert done.returncode == 0, output(done)
        windows = step_windows(dagster_home)
        runs = {k: w for k, w in windows.items() if k.startswith("run_partition[")}
        assert len(runs) == PARTITIONS, windows
        latest_start = max(start for start, _ in runs.values())
        earliest_end = min(end for _, end in runs.values())
        assert latest_start < earliest_end, f"the partitions did not run at once: {runs}"

        people = list(sb.world.iter_people())
        report = evaluate(sb.world, sb.obs.landed_copy(), sb.obs.writes)
        assert report.coverage == 1.0, report.missing[:10]
        assert report.false_invalid == 0, report.wrong[:10]
        assert set(sb.obs.writes) == {p.cio_id for p in people}
        assert set(sb.obs.writes.values()) == {1}, "a Person was written more than once"
        # Each partition read its own share (the tap's hash), and the shares add up to everyone.
        shares = Counter(partition_of(p.cio_id, PARTITIONS) for p in people)
        reports = mapper_reports(first)
        assert [r["records"] for r in reports] == [shares[i] for i in range(PARTITIONS)]
        assert sum(r["records"] for r in reports) == len(people)
        assert all(r["by_source"]["engine"] > 0 for r in reports)
        # Three taps at once within the workspace's 10 requests/s: each took a third of it.
        assert sb.obs.rate_limited.get("app", 0) == 0
        first_peaks = dict(sb.obs.smtp_peak_concurrency)

        state = subprocess.run(
            [MELTANO, "state", "list"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert state.returncode == 0, state.stderr[-2000:]
        for i in range(PARTITIONS):  # one state id each, in the one system database
            assert f"target-customerio-ev:partition-{i}-of-{PARTITIONS}" in state.stdout

        # -- second pass: every verdict from the shared cache, no SMTP, nothing rewritten --------
        sb.obs.reset_traffic()
        env["MAPPER_EMAILVERIFY_REPORT_PATH"] = str(second / "mapper.json")
        env["TARGET_CUSTOMERIO_EV_REPORT_PATH"] = str(second / "target.json")
        done = run_readme(VERIFY_PEOPLE, env)
        assert done.returncode == 0, output(done)
        snap = sb.obs.snapshot()
        assert snap["smtp_connections"] == 0, snap["smtp_peak_concurrency"]
        # Rewritten with the same verdict, a new timestamp only: People without an address (a
        # local verdict, re-stamped as freshness is off here) and People sharing an address with
        # a Person of another partition (both partitions verified it at once; the cache keeps the
        # newer verdict, which the older's Person then gets).
        addresses = Counter(p.email.strip().lower() for p in people if p.email and p.email.strip())
        restamped = {
            p.cio_id
            for p in people
            if not (p.email and p.email.strip()) or addresses[p.email.strip().lower()] > 1
        }
        assert set(sb.obs.writes) <= restamped, set(sb.obs.writes) - restamped
        for key in sb.obs.writes:
            verdicts = {(t["EV_Status"], t["EV_SubStatus"]) for _, t in sb.obs.landings[key]}
            assert len(verdicts) == 1, (key, verdicts)
        for r in mapper_reports(second):
            sources = r["by_source"]
            assert sources["engine"] == sources["fresh"] == 0, sources
            assert sources["cache"] + sources["local"] == r["records"], sources
            assert sources["cache"] > 0

        # -- verify_new_people: the sign-ups since, once each ------------------------------------
        added = sb.add_people(5)
        sb.obs.reset_traffic()
        env["MAPPER_EMAILVERIFY_REPORT_PATH"] = str(tmp_path / "new-mapper.json")
        env["TARGET_CUSTOMERIO_EV_REPORT_PATH"] = str(tmp_path / "new-target.json")
        done = run_readme(VERIFY_NEW_PEOPLE, env)
        assert done.returncode == 0, output(done)
        assert dict(sb.obs.writes) == {p.cio_id: 1 for p in added}
        new = evaluate(sb.world, sb.obs.landed_copy(), sb.obs.writes, people=added)
        assert new.coverage == 1.0 and new.false_invalid == 0, new.wrong

    # Last, as it waits on the mapper's shared caps (`cache_url`, one `egress_ip`): no mail host
    # saw more connections at once than one worker's cap, though the workers reached it.
    over = {ip: peak for ip, peak in first_peaks.items() if peak > MAX_CONNECTIONS}
    assert not over, f"per-host caps not shared across the partitions: {over}"
    assert max(first_peaks.values()) == MAX_CONNECTIONS
