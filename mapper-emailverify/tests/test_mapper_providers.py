"""The mapper's executable against the sandbox's provider look-alikes: a greylisted record is
resolved within the run without holding the stream, the run report counts it, and a second run
with the same `cache_path` spends no catch-all probe on the domains the first one learned.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cio_sandbox import Sandbox, World
from cio_sandbox.world import PROVIDER_CASE_WEIGHTS

MAPPER = str(Path(sys.executable).parent / "mapper-emailverify")
SCHEMA = {
    "type": "SCHEMA",
    "stream": "people",
    "key_properties": ["id"],
    "schema": {"properties": {"id": {"type": "integer"}, "email": {"type": ["string", "null"]}}},
}


@pytest.fixture(scope="module")
def world() -> Iterator[Sandbox]:
    with Sandbox(World(seed=21, people=800, case_weights=PROVIDER_CASE_WEIGHTS)) as sb:
        yield sb


def run_mapper(sb: Sandbox, tmp: Path, lines: list[dict[str, Any]], **over: Any) -> Any:
    config = tmp / f"config-{len(list(tmp.iterdir()))}.json"
    report = tmp / "report.json"
    settings = sb.mapper_config(
        smtp_timeout=2,
        greylist_retry_after=2,
        greylist_max_wait=30,
        cache_path=str(tmp / "cache.sqlite"),
        report_path=str(report),
        **over,
    )
    config.write_text(json.dumps(settings))
    proc = subprocess.run(
        [MAPPER, "--config", str(config)],
        input="".join(json.dumps(line) + "\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    return out, json.loads(report.read_text()), proc.stderr


def addresses(sb: Sandbox, provider: str | None, count: int, skip: int = 0) -> list[str]:
    found = [
        p.email
        for p in sb.world.iter_people()
        if p.truth.provider == provider
        and p.email
        and p.email == p.email.strip()
        and p.truth.case != "hard_bounce"
    ]
    return found[skip : skip + count]


def test_a_greylisted_record_is_resolved_without_holding_the_stream(
    world: Sandbox, tmp_path: Path
) -> None:
    [grey] = addresses(world, "zoho", 1)
    others = addresses(world, "gmail", 30)
    lines = [
        SCHEMA,
        {"type": "RECORD", "stream": "people", "record": {"id": 0, "email": grey}},
        {"type": "STATE", "value": {"n": 1}},
        *(
            {"type": "RECORD", "stream": "people", "record": {"id": i + 1, "email": email}}
            for i, email in enumerate(others)
        ),
        {"type": "STATE", "value": {"n": 2}},
    ]
    out, report, stderr = run_mapper(world, tmp_path, lines)
    kinds = [(m["type"], m.get("record", {}).get("id")) for m in out]
    grey_at = kinds.index(("RECORD", 0))
    # The 30 records read after the STATE were written while the greylisted one waited ...
    assert all(kinds.index(("RECORD", i + 1)) < grey_at for i in range(len(others)))
    # ... and no STATE went out before it.
    assert kinds.index(("STATE", None)) > grey_at
    record = next(m["record"] for m in out if m.get("record", {}).get("id") == 0)
    truth = world.world.person_by_email(grey).truth  # type: ignore[union-attr]
    assert (record["EV_Status"], record["EV_SubStatus"]) == (truth.status, truth.substatus)
    assert report["smtp"]["greylisted"] == 1 and report["smtp"]["greylist_resolved"] == 1
    assert "resolved on retry 1" in stderr


def test_a_second_run_reuses_what_the_first_learned_about_domains(
    world: Sandbox, tmp_path: Path
) -> None:
    def people(skip: int) -> list[dict[str, Any]]:
        picked = [
            *addresses(world, "google_workspace", 10, skip),
            *addresses(world, "microsoft365", 10, skip),
            *addresses(world, "icloud", 5, skip),
            *addresses(world, None, 10, skip),
        ]
        return [
            SCHEMA,
            *(
                {"type": "RECORD", "stream": "people", "record": {"id": i, "email": email}}
                for i, email in enumerate(picked)
            ),
        ]

    _, first, _ = run_mapper(world, tmp_path, people(0))
    _, second, stderr = run_mapper(world, tmp_path, people(10))  # other People, same domains
    assert first["smtp"]["catch_all_probes"] > 0
    assert second["smtp"].get("catch_all_cached", 0) > 0
    assert second["smtp"].get("catch_all_probes", 0) < first["smtp"]["catch_all_probes"]
    assert "known from the domain cache" in stderr
