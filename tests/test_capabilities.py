"""Every capability a plugin declares works in this pipeline; what would not work is not declared,
and the settings behind it are refused with one line.

- `batch`: the mapper cannot read BATCH messages, so the tap does not declare it and refuses
  `batch_config`; a BATCH message that reaches the mapper anyway stops it with one line.
- `schema-flattening`: the tap's (or the target's) flattening turns the `attributes` object into
  `attributes__EV_Status` fields; the mapper's fresh-skip and the target's skip-unchanged read them.
- `activate-version`: the target ignores ACTIVATE_VERSION (it never deletes People), so the tap
  does not declare it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cio_sandbox import Sandbox, World
from cio_sandbox.pipeline import MAPPER, TAP, TARGET, executable, run_piped, write_config

DECLARED = {
    TAP: {
        "about",
        "catalog",
        "discover",
        "schema-flattening",
        "state",
        "stream-maps",
        "structured-logging",
    },
    MAPPER: {"about", "structured-logging"},
    TARGET: {"about", "schema-flattening", "stream-maps", "structured-logging", "validate-records"},
}


def about(plugin: str) -> dict[str, Any]:
    done = subprocess.run(
        [executable(plugin), "--about", "--format=json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = json.loads(done.stdout)
    assert isinstance(loaded, dict)
    return loaded


def errors_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "ERROR" in line or "CRITICAL" in line]


@pytest.mark.parametrize("plugin", sorted(DECLARED))
def test_each_plugin_declares_only_the_capabilities_that_work_here(plugin: str) -> None:
    info = about(plugin)
    assert set(info["capabilities"]) == DECLARED[plugin]
    assert "batch_config" not in info["settings"]["properties"]


def test_the_tap_refuses_batch_config_with_one_line(sandbox: Sandbox, tmp_path: Path) -> None:
    config = sandbox.tap_config(
        batch_config={
            "encoding": {"format": "jsonl", "compression": "gzip"},
            "storage": {"root": f"file://{tmp_path}"},
        }
    )
    before = sandbox.obs.requests_to("app")
    done = subprocess.run(
        [executable(TAP), "--config", str(write_config(tmp_path, TAP, config))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr[-1500:]
    assert "Traceback" not in done.stderr
    problems = [e for e in errors_of(done.stderr) if not e.endswith("Config validation failed")]
    assert len(problems) == 1, problems
    assert "batch_config" in problems[0] and "mapper-emailverify" in problems[0], problems
    assert done.stdout.strip() == ""
    assert sandbox.obs.requests_to("app") == before


def test_the_mapper_refuses_a_batch_message_with_one_line(sandbox: Sandbox, tmp_path: Path) -> None:
    lines = [
        {
            "type": "SCHEMA",
            "stream": "people",
            "key_properties": ["cio_id"],
            "schema": {"type": "object", "properties": {"cio_id": {}, "email": {}}},
        },
        {"type": "STATE", "value": {"bookmarks": {}}},
        {
            "type": "BATCH",
            "stream": "people",
            "encoding": {"format": "jsonl", "compression": "gzip"},
            "manifest": [f"file://{tmp_path}/people-1.json.gz"],
        },
        {"type": "STATE", "value": {"bookmarks": {"people": {"after": 1}}}},
    ]
    config = write_config(tmp_path, MAPPER, sandbox.mapper_config(smtp_check=False))
    done = subprocess.run(
        [executable(MAPPER), "--config", str(config)],
        input="".join(json.dumps(m) + "\n" for m in lines),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    [error] = errors_of(done.stderr)
    assert "cannot read BATCH messages" in error and "batch_config" in error, error
    states = [m for m in map(json.loads, done.stdout.splitlines()) if m["type"] == "STATE"]
    assert states == [lines[1]], "no STATE past the BATCH message"


@pytest.mark.slow
@pytest.mark.parametrize("where", ["tap", "target"])
def test_flattening_keeps_fresh_skip_and_skip_unchanged(
    where: str, make_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    """A re-run with flattening on probes nothing and writes nothing, as without it."""
    sb = make_sandbox(World(seed=5, people=200))
    sb.obs.faults.app_rate_limit = 0
    tap: dict[str, Any] = {"requests_per_second": 200}
    target: dict[str, Any] = {}
    flattening = {"flattening_enabled": True, "flattening_max_depth": 1}
    (tap if where == "tap" else target).update(flattening)
    plain = run_piped(sb, tmp_path / "plain", tap={"requests_per_second": 200})
    assert plain.ok, {name: log[-2000:] for name, log in plain.logs.items()}
    written = sb.obs.snapshot()["writes"]
    assert written > 0

    sb.obs.reset_traffic()
    # A cache of its own: fresh-skip must come from the flattened attributes, not the cache.
    again = run_piped(sb, tmp_path / "flat", tap=tap, target=target)
    assert again.ok, {name: log[-2000:] for name, log in again.logs.items()}
    snap = sb.obs.snapshot()
    assert snap["smtp_connections"] == 0, "fresh People were probed again"
    assert snap["writes"] == 0, "unchanged People were written again"
