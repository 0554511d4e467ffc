"""A person can follow a run: the tap's total reaches the mapper through the three real
executables, and the console is progress and summary lines, not METRIC lines (README, "The demo";
tap README, "Progress")."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
from cio_sandbox import Sandbox, World
from cio_sandbox.pipeline import MAPPER, PipedRun, run_piped

ROOT = Path(__file__).resolve().parent.parent
PEOPLE = 400
DONE_OF_TOTAL = re.compile(r"Progress: ([\d,]+) of ([\d,]+) records \((\d+)%\)")


def console_lines() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "console_lines", ROOT / "scripts" / "console_lines.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> PipedRun:
    """tap | mapper | target at default logging, as `meltano run` starts them."""
    with Sandbox(World(seed=17, people=PEOPLE)) as sb:
        sb.obs.faults.app_rate_limit = 0
        run = run_piped(sb, tmp_path_factory.mktemp("console"), tap={"requests_per_second": 200})
    assert run.ok, {name: log[-2000:] for name, log in run.logs.items()}
    return run


def test_the_taps_total_reaches_the_mapper(default_run: PipedRun) -> None:
    found = DONE_OF_TOTAL.findall(default_run.logs[MAPPER])
    assert found, default_run.logs[MAPPER][-2000:]
    done, total, percent = found[-1]
    assert int(done.replace(",", "")) == int(total.replace(",", "")) == PEOPLE
    assert percent == "100"


def test_the_console_is_progress_and_summary_not_metric_lines(default_run: PipedRun) -> None:
    counts = console_lines().classify(
        line for log in default_run.logs.values() for line in log.splitlines()
    )
    assert counts["progress"] >= 1
    assert counts["METRIC"] == 0, counts
    assert counts["progress"] + counts["summary"] > counts["METRIC"]
