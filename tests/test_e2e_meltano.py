"""The job as users run it: `meltano run` with the repository's meltano.yml, against the sandbox.

Meltano installs each plugin into its own virtual environment; the tests point its system
directory at a temporary folder so they never touch (or race with) a developer's `.meltano/`.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cio_sandbox import Sandbox, World
from cio_sandbox.demo import meltano_env, meltano_install
from cio_sandbox.report import evaluate

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
MELTANO = str(Path(sys.executable).parent / "meltano")
PLUGINS = ["tap-customerio-people", "mapper-emailverify", "target-customerio-ev"]


@pytest.fixture(scope="module")
def meltano_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private Meltano system dir with the project's plugins installed once for the module."""
    sys_dir = tmp_path_factory.mktemp("meltano") / ".meltano"
    meltano_install(sys_dir, [*PLUGINS, "tap-jsonl", "target-csv"], ROOT)
    return sys_dir


def run_meltano(
    args: list[str], sb: Sandbox, sys_dir: Path, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **meltano_env(sb, sys_dir / "mapper-report.json"),
        "MELTANO_SYS_DIR_ROOT": str(sys_dir),
        "MAPPER_EMAILVERIFY_CACHE_PATH": str(sys_dir / "emailverify-cache.sqlite"),
        **(extra or {}),
    }
    return subprocess.run(
        [MELTANO, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def test_meltano_run_writes_a_correct_verdict_on_every_person_and_reruns_write_nothing(
    meltano_dir: Path,
) -> None:
    with Sandbox(World(seed=21, people=2000)) as sb:
        sb.obs.faults.app_rate_limit = 0
        speed = {"TAP_CUSTOMERIO_PEOPLE_REQUESTS_PER_SECOND": "200"}
        first = run_meltano(
            ["run", "tap-customerio-people", "emailverify", "target-customerio-ev"],
            sb,
            meltano_dir,
            speed,
        )
        assert first.returncode == 0, first.stderr[-4000:]
        report = evaluate(sb.world, sb.obs.landed_copy(), sb.obs.writes)
        assert report.coverage == 1.0, report.missing[:10]
        assert report.false_invalid == 0, report.wrong[:10]
        assert report.accuracy >= 0.99, report.wrong[:20]
        assert report.timestamps_unix

        sb.obs.reset_traffic()
        again = run_meltano(["run", "verify-people"], sb, meltano_dir, speed)
        assert again.returncode == 0, again.stderr[-4000:]
        snap = sb.obs.snapshot()
        assert snap["writes"] == 0 and snap["smtp_connections"] == 0


def test_the_mapper_works_between_another_tap_and_another_target(
    meltano_dir: Path, tmp_path: Path
) -> None:
    """tap-jsonl reads a file of sign-ups (address nested in `contact`), target-csv writes the
    verdicts."""
    with Sandbox(World(seed=22, people=400)) as sb:
        # No bounce history travels with a file, so People whose truth is a hard bounce are
        # left out.
        people = [p for p in sb.world.iter_people() if p.email and p.truth.case != "hard_bounce"][
            :150
        ]
        source = tmp_path / "signups.jsonl"
        source.write_text(
            "".join(
                json.dumps({"signup_id": p.index, "contact": {"email": p.email}}) + "\n"
                for p in people
            )
        )
        out_dir = tmp_path / "out"
        out_dir.mkdir()
        result = run_meltano(
            ["run", "tap-jsonl", "emailverify-signups", "target-csv"],
            sb,
            meltano_dir,
            {
                "TAP_JSONL_PATH": str(source),
                "TAP_JSONL_STREAM_NAME": "signups",
                "TARGET_CSV_OUTPUT_PATH": str(out_dir),
            },
        )
        assert result.returncode == 0, result.stderr[-4000:]
    files = list(out_dir.glob("signups*.csv"))
    assert files, list(out_dir.iterdir())
    rows = list(csv.DictReader(files[0].open()))
    assert len(rows) == len(people)
    truth = {p.index: p.truth for p in people}
    correct = sum(
        (r["EV_Status"], r["EV_SubStatus"]) in truth[int(r["signup_id"])].accepted for r in rows
    )
    assert all(r["EV_Validation_Timestamp"] for r in rows)
    assert not [
        r for r in rows if r["EV_Status"] == "Invalid" and not truth[int(r["signup_id"])].is_invalid
    ]
    assert correct >= 0.98 * len(rows)


def test_the_readme_demo_runs(meltano_dir: Path) -> None:
    """`make demo` runs `cio-sandbox demo`: the real job twice, then the marketer's report."""
    env = {
        **os.environ,
        "MELTANO_SYS_DIR_ROOT": str(meltano_dir),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cio-sandbox"), "demo", "--people", "600"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "coverage 100.0%" in result.stdout
    assert "false Invalids: 0" in result.stdout
    assert "Target: landing: 50 of 50 sampled People show the new values." in result.stdout
    assert "Report to look at:" in result.stdout  # the HTML page, mapper and target drawn
    assert (
        "Second run:" in result.stdout
        and "0 SMTP connections, 0 identify calls landed" in result.stdout
    )


def test_settings_made_with_meltano_config_set_reach_the_mapper(
    meltano_dir: Path, tmp_path: Path
) -> None:
    """`meltano config set mapper-emailverify ...` writes the plugin's own config, which Meltano
    replaces with the mapping's when it runs `emailverify`; the mapper reads it back."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "meltano.yml").write_text((ROOT / "meltano.yml").read_text())
    with Sandbox(World(seed=24, people=300)) as sb:
        sb.obs.faults.app_rate_limit = 0
        domain = next(
            p.email.rsplit("@", 1)[1].lower()
            for p in sb.world.iter_people()
            if p.truth.case == "normal" and p.email and "@" in p.email
        )
        env = {
            **meltano_env(sb, tmp_path / "report.json"),
            "MELTANO_SYS_DIR_ROOT": str(meltano_dir),
            "MAPPER_EMAILVERIFY_CACHE_PATH": str(tmp_path / "cache.sqlite"),
            "TAP_CUSTOMERIO_PEOPLE_REQUESTS_PER_SECOND": "200",
        }
        # As a user types it: no environment, so Meltano writes the plugin's own config.
        plain = {k: v for k, v in env.items() if k != "MELTANO_ENVIRONMENT"}
        setting = subprocess.run(
            [MELTANO, "config", "set", "mapper-emailverify", "extra_disposable_domains",
             json.dumps([domain])],
            cwd=project, env=plain, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert setting.returncode == 0, setting.stderr[-2000:]
        result = subprocess.run(
            [MELTANO, "run", "tap-customerio-people", "emailverify", "target-customerio-ev"],
            cwd=project, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-4000:]
        landed = sb.obs.landed_copy()
        on_domain = [
            p
            for p in sb.world.iter_people()
            if p.email and p.email.strip().lower().endswith(domain)
        ]
    assert on_domain
    statuses = {landed[p.cio_id]["EV_Status"] for p in on_domain if p.cio_id in landed}
    assert statuses == {"Disposable"}, statuses
    [said] = [line for line in result.stderr.splitlines() if "Settings from meltano.yml" in line]
    assert "extra_disposable_domains" in said, said
