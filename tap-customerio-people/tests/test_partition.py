"""The ``partition`` setting (tap README, "Partitioned runs"): N jobs with ``0/N`` .. ``N-1/N``
read every Person exactly once, each hydrates only its share, and each keeps to its share of the
workspace's request budget. A bad value is one line before any request."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cio_sandbox import Sandbox
from singer_sdk.exceptions import ConfigValidationError
from tap_customerio_people import settings
from tap_customerio_people.partition import Partition, partition_of
from tap_customerio_people.ratelimit import RateLimiter
from tap_customerio_people.tap import TapCustomerIOPeople

from .conftest import run_tap

EXECUTABLE = Path(sys.executable).parent / "tap-customerio-people"
FAST = {"requests_per_second": 500}  # the rate budget is not the subject of the sandbox runs
SEARCHES = ("app", "POST /v1/customers")
ATTRIBUTES = ("app", "POST /v1/customers/attributes")
KEY = "expected_record_count"


@pytest.fixture
def sb(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    sandbox = make_sandbox(seed=63, people=3000)
    sandbox.obs.faults.app_rate_limit = 0
    return sandbox


# --------------------------------------------------------------------------- refused before a run
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3/3", "partition must be i/N with 0 <= i < N"),
        ("-1/3", "partition must be i/N with 0 <= i < N"),
        ("1/0", "partition must be i/N with 0 <= i < N"),
        ("a/3", "partition must be i/N with 0 <= i < N"),
        ("1.0/3", "partition must be i/N with 0 <= i < N"),
        ("1", "partition must be i/N with 0 <= i < N"),
        ("1/3/4", "partition must be i/N with 0 <= i < N"),
        ("", "partition must be i/N with 0 <= i < N"),
        (7, "7 is not of type 'string'"),
    ],
)
def test_a_bad_partition_is_one_line_before_any_request(
    make_sandbox: Callable[..., Sandbox], value: Any, expected: str
) -> None:
    sb = make_sandbox(seed=63, people=20)
    with pytest.raises(ConfigValidationError) as caught:
        run_tap(sb.tap_config(partition=value))
    [problem] = caught.value.errors
    assert problem.startswith(expected), problem
    assert "\n" not in problem
    assert sb.obs.requests_to("app") == 0


@pytest.mark.parametrize(
    ("text", "index", "count"), [("0/1", 0, 1), (" 2/3 ", 2, 3), ("9/10", 9, 10)]
)
def test_good_partitions_parse(text: str, index: int, count: int) -> None:
    assert Partition.parse(text) == Partition(index, count)


# --------------------------------------------------------------------------- a stable hash
def test_the_hash_is_pinned_so_runs_and_machines_agree() -> None:
    """BLAKE2b-64 of the bare cio_id, big-endian, mod N: never Python's salted ``hash()``."""
    assert [partition_of("3000001", 3), partition_of("0", 3), partition_of("f00dbabe", 3)] == [
        0,
        1,
        2,
    ]
    assert [partition_of("0", 10), partition_of("f00dbabe", 10), partition_of("3000001", 10)] == [
        9,
        9,
        2,
    ]
    # The cio_ form of an id is the same Person, so the same partition.
    assert partition_of("cio_f00dbabe", 3) == partition_of("f00dbabe", 3)
    assert all(partition_of(str(n), 1) == 0 for n in range(50))


def test_the_shares_are_even() -> None:
    counts = Counter(partition_of(str(3_000_000 + n), 4) for n in range(8000))
    assert set(counts) == {0, 1, 2, 3}
    assert all(1800 < c < 2200 for c in counts.values()), counts


# --------------------------------------------------------------------------- against the sandbox
def test_three_partitions_read_every_person_exactly_once_each_hydrating_a_third(
    sb: Sandbox,
) -> None:
    everyone = {p.cio_id for p in sb.world.iter_people()}
    full = run_tap(sb.tap_config(**FAST))
    full_searches, full_hydration = sb.obs.requests[SEARCHES], sb.obs.requests[ATTRIBUTES]
    assert full_hydration == math.ceil(len(everyone) / 100)

    seen: Counter[str] = Counter()
    for index in range(3):
        sb.obs.reset_traffic()
        run = run_tap(sb.tap_config(partition=f"{index}/3", **FAST))
        mine = [r["cio_id"] for r in run.people]
        assert {partition_of(c, 3) for c in mine} == {index}
        seen.update(mine)
        [schema] = [m for m in run.messages if m["type"] == "SCHEMA" and m["stream"] == "people"]
        assert schema[KEY] == len(mine)
        # The listing is the full run's (search cannot filter by hash); hydration is the share's.
        assert sb.obs.requests[SEARCHES] == full_searches
        assert sb.obs.requests[ATTRIBUTES] == math.ceil(len(mine) / 100)
        assert sb.obs.requests[ATTRIBUTES] <= full_hydration / 3 + 2
    assert set(seen) == everyone == {r["cio_id"] for r in full.people}
    assert set(seen.values()) == {1}


def test_every_partition_reads_the_suppressions(sb: Sandbox) -> None:
    """The mapper's hard-bounce check needs them for whichever People its partition verifies."""
    full = run_tap(sb.tap_config(**FAST), streams=("suppressions",))
    assert full.records["suppressions"]
    for index in range(2):
        run = run_tap(sb.tap_config(partition=f"{index}/2", **FAST), streams=("suppressions",))
        assert run.records["suppressions"] == full.records["suppressions"]


# --------------------------------------------------------------------------- the shared budget
@pytest.mark.parametrize(("partition", "rate"), [(None, 9.0), ("0/1", 9.0), ("1/3", 3.0)])
def test_each_partition_takes_its_share_of_the_budget(
    make_sandbox: Callable[..., Sandbox],
    caplog: pytest.LogCaptureFixture,
    partition: str | None,
    rate: float,
) -> None:
    sb = make_sandbox(seed=63, people=20)
    extra = {"partition": partition} if partition else {}
    config = sb.tap_config(requests_per_second=9, **extra)
    assert TapCustomerIOPeople(config=config).rate_limiter.rate == rate
    with caplog.at_level(logging.INFO, logger="tap-customerio-people"):
        run_tap(config, streams=("segments",))
    lines = [m for m in caplog.messages if m.startswith("partition ")]
    if partition is None:
        assert lines == []
    else:
        assert lines == [
            f"partition {partition}: this job reads the People whose cio_id hashes to share "
            f"{partition.split('/')[0]} of {partition.split('/')[1]}, at {rate:g} requests/s "
            f"(requests_per_second 9 shared by {partition.split('/')[1]} jobs)"
        ]


@pytest.mark.parametrize(
    ("budget", "partition", "rate"),
    [(10, "1/3", 3.0), (10, "0/4", 2.0), (10, "2/10", 1.0), (7.5, "0/2", 3.0), (10, "0/20", 0.5)],
)
def test_a_share_is_a_whole_number_of_the_windows_requests(
    budget: float, partition: str, rate: float
) -> None:
    """The server counts 10 requests per 1 s window over every job: 3.33/s each lets three jobs
    start 4 requests each in one second (12); 3/s each never passes 9."""
    config = {"requests_per_second": budget, "partition": partition}
    assert settings.request_rate(config) == rate


def test_three_partitions_at_once_never_pass_the_workspaces_window() -> None:
    """Three jobs' budgets side by side, started together (the worst phase): no 1 s window of
    their merged request starts holds more than the workspace's 10."""
    starts: list[float] = []
    lock = threading.Lock()

    def job() -> None:
        limiter = RateLimiter(
            settings.request_rate({"requests_per_second": 10, "partition": "0/3"})
        )
        for _ in range(8):
            ticket = limiter.acquire()
            with lock:
                starts.append(ticket.start)
            limiter.release(ticket, "search")

    threads = [threading.Thread(target=job) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    starts.sort()
    busiest = max(sum(1 for t in starts if first <= t < first + 1.0) for first in starts)
    assert busiest <= 10, busiest


def test_the_executable_exits_1_with_one_line(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    sb = make_sandbox(seed=63, people=20)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(sb.tap_config(partition="1/1")))
    done = subprocess.run(
        [str(EXECUTABLE), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    [line] = [x for x in done.stderr.splitlines() if "partition must be i/N" in x]
    assert "ERROR" in line
    assert "Traceback" not in done.stderr and sb.keys.app_api_key not in done.stderr
    assert done.stdout.strip() == ""
    assert sb.obs.requests_to("app") == 0
