"""Run the three plugins' executables piped together, the way `meltano run` does, against a sandbox.

Shared by the end-to-end tests, the demo and the benchmarks, so each judges the same real pipeline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .sandbox import Sandbox

TAP, MAPPER, TARGET = "tap-customerio-people", "mapper-emailverify", "target-customerio-ev"


def executable(name: str) -> str:
    """The plugin's console script next to this interpreter (the project's virtualenv)."""
    candidate = Path(sys.executable).parent / name
    if not candidate.exists():
        raise FileNotFoundError(
            f"{name} is not installed in {candidate.parent}; run `make install`"
        )
    return str(candidate)


@dataclass
class PipedRun:
    returncodes: dict[str, int]
    states: list[dict[str, Any]] = field(default_factory=list)  # every STATE the target emitted
    logs: dict[str, str] = field(default_factory=dict)  # stderr of each plugin

    @property
    def ok(self) -> bool:
        return all(code == 0 for code in self.returncodes.values())

    @property
    def final_state(self) -> dict[str, Any] | None:
        return self.states[-1] if self.states else None


def selected_catalog(tap_config: Path, workdir: Path, streams: list[str]) -> Path:
    """The tap's discovered catalog with only `streams` selected, written next to the configs."""
    found = subprocess.run(
        [executable(TAP), "--config", str(tap_config), "--discover"],
        capture_output=True,
        check=True,
        timeout=120,
    )
    catalog = json.loads(found.stdout)
    for entry in catalog["streams"]:
        chosen = entry["tap_stream_id"] in streams
        for item in entry.get("metadata", []):
            if not item.get("breadcrumb"):
                item["metadata"]["selected"] = chosen
    path = workdir / "catalog.json"
    path.write_text(json.dumps(catalog))
    return path


def write_config(directory: Path, name: str, config: dict[str, Any]) -> Path:
    path = directory / f"{name}.json"
    path.write_text(json.dumps(config))
    return path


def run_piped(
    sb: Sandbox,
    workdir: Path,
    *,
    tap: dict[str, Any] | None = None,
    mapper: dict[str, Any] | None = None,
    target: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    streams: list[str] | None = None,
) -> PipedRun:
    """tap | mapper | target with the sandbox's settings plus overrides.

    `streams` selects only those of the tap's streams (as a Meltano `select:` does), through a
    catalog from the tap's own discovery. Returns the exit codes, the states the target emitted
    and each plugin's log.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    tap_config = write_config(workdir, TAP, sb.tap_config(**(tap or {})))
    tap_cmd = [executable(TAP), "--config", str(tap_config)]
    if streams is not None:
        tap_cmd += ["--catalog", str(selected_catalog(tap_config, workdir, streams))]
    if state is not None:
        state_path = workdir / "state.json"
        state_path.write_text(json.dumps(state))
        tap_cmd += ["--state", str(state_path)]
    mapper_cfg = sb.mapper_config(**{"cache_path": str(workdir / "cache.sqlite"), **(mapper or {})})
    mapper_cmd = [executable(MAPPER), "--config", str(write_config(workdir, MAPPER, mapper_cfg))]
    target_cfg = sb.target_config(
        **{
            "dead_letter_path": str(workdir / "dead-letter.jsonl"),
            # The landing check reads a sample back through the App API, as the shipped job does.
            "app_api_key": sb.keys.app_api_key,
            "app_api_url": sb.app_api_url,
            "landing_check_sample": 12,
            **(target or {}),
        }
    )
    target_cmd = [executable(TARGET), "--config", str(write_config(workdir, TARGET, target_cfg))]
    run_env = {**os.environ, **(env or {})}
    logs = {name: (workdir / f"{name}.log").open("w") for name in (TAP, MAPPER, TARGET)}
    try:
        tap_proc = subprocess.Popen(tap_cmd, stdout=subprocess.PIPE, stderr=logs[TAP], env=run_env)
        map_proc = subprocess.Popen(
            mapper_cmd,
            stdin=tap_proc.stdout,
            stdout=subprocess.PIPE,
            stderr=logs[MAPPER],
            env=run_env,
        )
        tgt_proc = subprocess.Popen(
            target_cmd,
            stdin=map_proc.stdout,
            stdout=subprocess.PIPE,
            stderr=logs[TARGET],
            env=run_env,
        )
        assert tap_proc.stdout and map_proc.stdout
        # The mapper owns the tap's stdout now; closing ours lets the tap see SIGPIPE if the
        # mapper dies.
        tap_proc.stdout.close()
        map_proc.stdout.close()
        out, _ = tgt_proc.communicate(timeout=timeout)
        codes = {
            TAP: tap_proc.wait(timeout),
            MAPPER: map_proc.wait(timeout),
            TARGET: tgt_proc.returncode,
        }
    finally:
        for handle in logs.values():
            handle.close()
    # A Singer target writes each completed state value as one JSON line on stdout.
    states = [
        json.loads(line) for line in out.decode().splitlines() if line.strip().startswith("{")
    ]
    return PipedRun(codes, states, {name: (workdir / f"{name}.log").read_text() for name in logs})
