"""The real job, end to end: the three executables piped together against a sandbox world of
thousands of People."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cio_sandbox import Sandbox, World
from cio_sandbox.pipeline import MAPPER, TAP, TARGET, executable, run_piped, write_config
from cio_sandbox.report import evaluate

pytestmark = pytest.mark.slow

PEOPLE = 3000


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory):
    """One sandbox and one full run, shared by the assertions about it and the re-run after it."""
    workdir = tmp_path_factory.mktemp("e2e")
    with Sandbox(World(seed=11, people=PEOPLE)) as sb:
        sb.obs.faults.app_rate_limit = 0  # the tap's budget is tested elsewhere; keep this run fast
        run = run_piped(sb, workdir, tap={"requests_per_second": 200})
        yield sb, run, workdir


def test_every_person_with_an_address_gets_a_correct_verdict(first_run) -> None:
    sb, run, _ = first_run
    assert run.ok, {name: log[-2000:] for name, log in run.logs.items()}
    report = evaluate(sb.world, sb.obs.landed_copy(), sb.obs.writes)
    assert report.missing == []
    assert report.coverage == 1.0
    assert report.false_invalid == 0, report.wrong[:10]
    assert report.accuracy >= 0.99, report.wrong[:20]
    assert report.timestamps_unix, "EV_Validation_Timestamp must land as Unix seconds"
    assert report.written > 0.8 * report.people


def test_each_person_is_written_at_most_once(first_run) -> None:
    sb, _, _ = first_run
    assert max(sb.obs.writes.values()) == 1


def test_no_secret_and_no_address_in_info_logs(first_run) -> None:
    sb, run, _ = first_run
    keys = [sb.keys.app_api_key, sb.keys.pipelines_api_key]
    addresses = [p.email.strip() for p in sb.world.iter_people() if p.email and "@" in p.email][
        :500
    ]
    for name, log in run.logs.items():
        for key in keys:
            assert key not in log, f"{name} logged a key"
        leaked = [a for a in addresses if a in log]
        assert not leaked, f"{name} logged addresses at INFO: {leaked[:3]}"


def test_a_rerun_probes_nothing_and_writes_nothing(first_run) -> None:
    sb, run, workdir = first_run
    sb.obs.reset_traffic()
    again = run_piped(
        sb,
        workdir / "again",
        tap={"requests_per_second": 200},
        mapper={"cache_path": str(workdir / "cache.sqlite")},
        state=run.final_state,
    )
    assert again.ok, {name: log[-2000:] for name, log in again.logs.items()}
    snap = sb.obs.snapshot()
    assert snap["writes"] == 0, "unchanged People must not be written again"
    assert snap["smtp_connections"] == 0, "fresh People must not be probed again"


def test_segment_filtering_end_to_end(make_sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = make_sandbox(World(seed=12, people=1500))
    sb.obs.faults.app_rate_limit = 0
    run = run_piped(sb, tmp_path, tap={"segment_ids": [2], "requests_per_second": 200})
    assert run.ok, {name: log[-2000:] for name, log in run.logs.items()}
    members = [p for p in sb.world.iter_people() if 2 in p.segments]
    landed = sb.obs.landed_copy()
    assert set(landed) <= {p.cio_id for p in members}
    report = evaluate(sb.world, landed, people=members)
    assert report.coverage == 1.0 and report.false_invalid == 0


def test_eu_region_end_to_end(make_sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    sb = make_sandbox(World(seed=13, people=600, region="eu"))
    sb.obs.faults.app_rate_limit = 0
    run = run_piped(
        sb, tmp_path, tap={"region": "eu", "requests_per_second": 200}, target={"region": "eu"}
    )
    assert run.ok, {name: log[-2000:] for name, log in run.logs.items()}
    report = evaluate(sb.world, sb.obs.landed_copy())
    assert report.coverage == 1.0 and report.false_invalid == 0


def test_an_interrupted_run_resumes_to_full_coverage(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    """SIGKILL the target mid-run: the state it emitted is never ahead of what landed, and a
    re-run finishes."""
    sb = make_sandbox(World(seed=14, people=2000))
    sb.obs.faults.app_rate_limit = 0
    sb.obs.faults.pipelines_latency = 0.05
    tap_cfg = write_config(tmp_path, TAP, sb.tap_config(requests_per_second=200))
    map_cfg = write_config(
        tmp_path, MAPPER, sb.mapper_config(cache_path=str(tmp_path / "cache.sqlite"))
    )
    tgt_cfg = write_config(tmp_path, TARGET, sb.target_config(batch_size_rows=50))
    tap = subprocess.Popen(
        [executable(TAP), "--config", str(tap_cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    mapper = subprocess.Popen(
        [executable(MAPPER), "--config", str(map_cfg)],
        stdin=tap.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    target = subprocess.Popen(
        [executable(TARGET), "--config", str(tgt_cfg)],
        stdin=mapper.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert tap.stdout and mapper.stdout and target.stdout
    tap.stdout.close()
    mapper.stdout.close()
    deadline = time.monotonic() + 120
    while len(sb.obs.landed_copy()) < 300 and time.monotonic() < deadline and target.poll() is None:
        time.sleep(0.05)
    os.kill(target.pid, signal.SIGKILL)
    out = target.stdout.read().decode()
    for proc in (tap, mapper, target):
        proc.wait(timeout=60)
    assert 0 < len(sb.obs.landed_copy()) < 2000, "the kill should land mid-run"
    states = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    rerun = run_piped(
        sb,
        tmp_path / "rerun",
        tap={"requests_per_second": 200},
        mapper={"cache_path": str(tmp_path / "cache.sqlite")},
        state=states[-1] if states else None,
    )
    assert rerun.ok, {name: log[-2000:] for name, log in rerun.logs.items()}
    report = evaluate(sb.world, sb.obs.landed_copy())
    assert report.coverage == 1.0 and report.false_invalid == 0
