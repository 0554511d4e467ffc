"""The total a person can follow: the People stream's SCHEMA carries `expected_record_count`, the
number of People the listing found, before the first record (tap README, "Progress")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cio_sandbox import Sandbox

from .conftest import run_tap

EXECUTABLE = Path(sys.executable).parent / "tap-customerio-people"
KEY = "expected_record_count"
FAST = {"requests_per_second": 200}  # the rate budget is not the subject here


def schemas(messages: list[dict], stream: str) -> list[tuple[int, dict]]:
    return [
        (i, m) for i, m in enumerate(messages) if m["type"] == "SCHEMA" and m["stream"] == stream
    ]


def test_the_people_schema_announces_how_many_records_follow(make_sandbox) -> None:
    sb: Sandbox = make_sandbox(seed=41, people=250)
    run = run_tap(sb.tap_config(**FAST), streams=("people", "suppressions"))
    (index, schema), *more = schemas(run.messages, "people")
    assert not more, "one SCHEMA for people, sent once the total is known"
    assert schema[KEY] == len(run.people) == 250
    first_record = next(
        i for i, m in enumerate(run.messages) if m["type"] == "RECORD" and m["stream"] == "people"
    )
    assert index < first_record
    # The rest of the SCHEMA is what a Singer SCHEMA always holds; other streams carry no total.
    assert set(schema) == {"type", "stream", "schema", "key_properties", KEY}
    ((_, suppressions),) = schemas(run.messages, "suppressions")
    assert KEY not in suppressions


def test_the_total_follows_the_filter_and_segments(make_sandbox) -> None:
    sb: Sandbox = make_sandbox(seed=41, people=250)
    run = run_tap(sb.tap_config(filter="unverified", segment_ids=[2, 4], **FAST))
    ((_, schema),) = schemas(run.messages, "people")
    assert schema[KEY] == len(run.people) > 0
    assert len(run.people) < 250


def test_metric_lines_are_off_by_default_and_back_with_metrics_log_level_info(
    make_sandbox, tmp_path: Path
) -> None:
    sb: Sandbox = make_sandbox(seed=41, people=120)
    found = {}
    for level in (None, "INFO"):
        config = sb.tap_config(**FAST, **({"metrics_log_level": level} if level else {}))
        path = tmp_path / f"tap-{level}.json"
        path.write_text(json.dumps(config))
        proc = subprocess.run(
            [str(EXECUTABLE), "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        found[level] = sum("METRIC" in line for line in proc.stderr.splitlines())
    assert found[None] == 0
    assert found["INFO"] > 0
