"""Each benchmark of `make bench` still runs (quick mode) and yields the figures the suite's table
reads.

No timing assertion: benchmarks are measured by `benchmarks/run.py`, never judged by the test suite.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.slow

BENCHMARKS_DIR = Path(__file__).resolve().parent.parent / "benchmarks"

# The keys the suite's table (benchmarks/run.py) reads from each benchmark's result.
EXPECTED: dict[str, set[str]] = {
    "tap": {
        "people_per_second",
        "fraction_of_ceiling",
        "ceiling_people_per_second",
        "rate_limited_429_received",
    },
    "mapper_cached": {
        "mapper_emailverify_records_per_second",
        "meltano_map_transform_records_per_second",
        "ratio",
    },
    "mapper_probe": {
        "mapper_emailverify_verifications_per_second",
        "py3_validate_email_verifications_per_second",
        "ratio",
        "peak_connections_per_mail_host",
        "max_connections_per_mx",
        "politeness_ceiling_per_second",
        "fraction_of_politeness_ceiling",
        "smtp_round_trips_per_verification",
        "concurrency_ceiling_per_second",
    },
    "target": {"loopback", "latency_20ms", "identifies", "goal_ratio"},
    "job": {"job", "people_per_second", "max_plugin_rss_mb", "memory_goal_mb"},
    "rerun": {"app_api_requests", "smtp_connections", "pipelines_calls"},
    "hostile": {"per_address", "throughput"},
    "incremental": {
        "incremental_run",
        "second_incremental_run",
        "full_run",
        "app_api_request_budget",
        "wall_ratio",
    },
    "providers": {"day1", "day2", "accuracy", "false_invalid", "false_valid_unverifiable"},
    "sessions": {
        "people_per_second",
        "by_rate_cap",
        "x_issue_baseline",
        "rcpts_per_session",
        "peak_connections_per_host",
        "peak_rcpt_per_minute_per_host",
        "false_invalid",
    },
    "workers": {"addresses", "max_connections_per_mx", "max_rcpt_per_minute_per_mx", "ways"},
}
NEEDS_PEERS = {"mapper_cached", "mapper_probe"}


def load(name: str) -> ModuleType:
    """A benchmark script as a module (they live outside any package; each puts its folder on
    sys.path)."""
    if str(BENCHMARKS_DIR) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS_DIR))
    spec = importlib.util.spec_from_file_location(
        f"benchmarks_{name}", BENCHMARKS_DIR / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def suite() -> ModuleType:
    return load("run")


@pytest.fixture(scope="module")
def peers() -> str | None:
    """Why the peers' virtualenv (.venv-peers, made with pip on first use) is unavailable, or
    None."""
    try:
        load("bench_mapper_cached").ensure_peers()
    except (subprocess.CalledProcessError, OSError) as exc:
        return (
            "the peers' virtualenv .venv-peers cannot be created (pip needs a package index): "
            f"{exc}"
        )
    return None


def test_the_suite_covers_every_figure_of_the_issue(suite: ModuleType) -> None:
    assert set(suite.BENCHMARKS) == set(EXPECTED)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_benchmark_runs_and_feeds_the_table(
    name: str, suite: ModuleType, peers: str | None
) -> None:
    if name in NEEDS_PEERS and peers:
        pytest.skip(peers)
    result: dict[str, Any] = suite.BENCHMARKS[name](True)
    assert EXPECTED[name] <= set(result), f"missing: {EXPECTED[name] - set(result)}"
    rows = suite.rows_for(name, result)
    assert rows and all(row.value and row.goal for row in rows)
    table = suite.markdown(rows)
    assert table.count("\n") == len(rows) + 1
    assert "FAILED" not in table
