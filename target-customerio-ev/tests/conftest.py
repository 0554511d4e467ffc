"""Singer input built from the sandbox world; ways to run the target (in-process, executable)."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cio_sandbox import Sandbox, World
from cio_sandbox.world import Person
from target_customerio_ev.target import TargetCustomerIOEV

EXECUTABLE = str(Path(sys.executable).with_name("target-customerio-ev"))
VERIFIED_AT = dt.datetime(2026, 11, 1, 10, 30, 15, tzinfo=dt.UTC)

PEOPLE_SCHEMA = {
    "type": "object",
    "properties": {
        "cio_id": {"type": "string"},
        "id": {"type": ["string", "null"]},
        "email": {"type": ["string", "null"]},
        "attributes": {"type": ["object", "null"], "additionalProperties": True},
        "unsubscribed": {"type": ["boolean", "null"]},
        "EV_Status": {"type": ["string", "null"]},
        "EV_SubStatus": {"type": ["string", "null"]},
        "EV_Validation_Timestamp": {"type": ["string", "null"], "format": "date-time"},
    },
}


def person_record(
    person: Person,
    *,
    verified_at: dt.datetime = VERIFIED_AT,
    attributes: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """What mapper-emailverify emits for a tap `people` record: the Person plus its EV verdict."""
    return {
        "cio_id": person.cio_id,
        "id": person.id,
        "email": person.email,
        "attributes": dict(person.attributes if attributes is None else attributes),
        "unsubscribed": person.unsubscribed,
        "EV_Status": person.truth.status,
        "EV_SubStatus": person.truth.substatus,
        "EV_Validation_Timestamp": verified_at.isoformat().replace("+00:00", "Z"),
        **extra,
    }


def singer_lines(
    records: Iterable[dict[str, Any]],
    *,
    stream: str = "people",
    schema: dict[str, Any] | None = None,
    state_every: int = 0,
    state_key: str = "position",
    start: int = 0,
    key_properties: tuple[str, ...] = ("cio_id",),
) -> list[str]:
    """SCHEMA, the RECORDs, and (optionally) a STATE after every ``state_every`` records."""
    lines = [
        json.dumps(
            {
                "type": "SCHEMA",
                "stream": stream,
                "key_properties": list(key_properties),
                "schema": schema or PEOPLE_SCHEMA,
            }
        )
    ]
    n = start
    for n, record in enumerate(records, start=start + 1):
        lines.append(json.dumps({"type": "RECORD", "stream": stream, "record": record}))
        if state_every and n % state_every == 0:
            lines.append(
                json.dumps({"type": "STATE", "value": {"bookmarks": {stream: {state_key: n}}}})
            )
    if state_every and n % state_every:
        lines.append(
            json.dumps({"type": "STATE", "value": {"bookmarks": {stream: {state_key: n}}}})
        )
    return lines


def expected_key(world: World, person: Person) -> str | None:
    """Where the sandbox lands a Person identified the `auto` way (id, else the trimmed email)."""
    if person.id:
        return person.cio_id
    if person.email and person.email.strip():
        address = person.email.strip()
        found = world.person_by_email(address)
        return found.cio_id if found is not None else f"new:{address}"
    return None


@dataclass
class Run:
    states: list[dict[str, Any]]
    stderr: str = ""
    returncode: int = 0
    stdout: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def run_in_process(config: dict[str, Any], lines: list[str]) -> tuple[TargetCustomerIOEV, Run]:
    target = TargetCustomerIOEV(config=config)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        target.listen(file_input=io.StringIO("\n".join(lines) + "\n"))
    states = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    return target, Run(states=states, stdout=out.getvalue())


def write_config(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "target-config.json"
    path.write_text(json.dumps(config))
    return path


def run_executable(
    tmp_path: Path, config: dict[str, Any], lines: list[str], timeout: float = 60
) -> Run:
    proc = subprocess.run(
        [EXECUTABLE, "--config", str(write_config(tmp_path, config))],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )
    states = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return Run(states=states, stderr=proc.stderr, returncode=proc.returncode, stdout=proc.stdout)


@pytest.fixture(scope="module")
def small_world_sandbox() -> Iterable[Sandbox]:
    """A sandbox of 600 People for tests that count writes from zero (counters reset per test)."""
    with Sandbox(World(seed=11, people=600)) as sb:
        yield sb


@pytest.fixture
def sb(small_world_sandbox: Sandbox) -> Iterable[Sandbox]:
    small_world_sandbox.obs.reset_faults()
    small_world_sandbox.obs.reset_counters()
    yield small_world_sandbox
    small_world_sandbox.obs.reset_faults()


@pytest.fixture(scope="session")
def h() -> SimpleNamespace:
    """This module's helpers for test modules (conftest is not importable with importlib mode)."""
    return SimpleNamespace(**{k: v for k, v in globals().items() if not k.startswith("_")})
