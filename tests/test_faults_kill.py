"""Kill each process of the pipeline (SIGKILL and SIGTERM) at seeded points, then run again.

One chain of runs over one world: each run resumes from the last STATE the previous run's target
emitted and is killed at a seeded point (the mapper and the target once a number of new writes has
landed, the tap, which is done before most writes land, after a number of App API requests); the
last run is left to finish.
Both pipes are relayed through the test, so every STATE is checked against what came before it:
the mapper never forwards a STATE ahead of the records the tap sent before it, and each STATE the
target emits is only emitted once every `people` record before it is held by the workspace.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
from cio_sandbox import Sandbox, World
from cio_sandbox.pipeline import MAPPER, TAP, TARGET, executable, write_config
from cio_sandbox.report import current_traits, evaluate

pytestmark = pytest.mark.slow

SEED = 20261130
PEOPLE = 400
# Killing the tap lets the mapper and target finish what they got, so those kills come last.
KILLS = [(name, sig) for name in (MAPPER, TARGET, TAP) for sig in (signal.SIGKILL, signal.SIGTERM)]


@dataclass
class Line:
    kind: str  # RECORD, STATE, SCHEMA, ...
    stream: str | None
    cio_id: str | None
    value: Any = None  # the state value of a STATE line
    ev: tuple[Any, Any] | None = None  # (EV_Status, EV_SubStatus) of a mapped record


def parse(raw: bytes) -> Line:
    message = json.loads(raw)
    kind = message.get("type")
    record = message.get("record") if kind == "RECORD" else None
    return Line(
        kind=kind,
        stream=message.get("stream"),
        cio_id=record.get("cio_id") if isinstance(record, dict) else None,
        value=message.get("value"),
        ev=(record.get("EV_Status"), record.get("EV_SubStatus"))
        if isinstance(record, dict)
        else None,
    )


@dataclass
class Relay:
    """Copies one pipe to the next, line by line, remembering what passed."""

    source: IO[bytes]
    sink: IO[bytes]
    lines: list[Line] = field(default_factory=list)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        try:
            for raw in self.source:
                self.lines.append(parse(raw))
                self.sink.write(raw)
                self.sink.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass  # downstream died: stop, and let upstream see its pipe close
        finally:
            for end in (self.sink, self.source):
                with contextlib.suppress(OSError):
                    end.close()


@dataclass
class Watched:
    """One run of tap | relay | mapper | relay | target."""

    procs: dict[str, subprocess.Popen[bytes]]
    relays: dict[str, Relay]
    threads: list[threading.Thread]
    target_states: list[tuple[Any, dict[str, dict[str, Any]]]]  # (value, landed when it was seen)
    state_reader: threading.Thread

    def wait(self, timeout: float = 120) -> dict[str, int]:
        codes = {name: proc.wait(timeout) for name, proc in self.procs.items()}
        for thread in [*self.threads, self.state_reader]:
            thread.join(timeout)
        return codes


def start(sb: Sandbox, workdir: Path, state: Any) -> Watched:
    workdir.mkdir(parents=True, exist_ok=True)
    # A slow tap (paged small, one hydration at a time, App API latency) is still running when
    # writes start to land, so that killing it interrupts it.
    tap_cfg = sb.tap_config(requests_per_second=200, page_size=50, hydration_concurrency=1)
    tap_cmd = [executable(TAP), "--config", str(write_config(workdir, TAP, tap_cfg))]
    if state is not None:
        (workdir / "state.json").write_text(json.dumps(state))
        tap_cmd += ["--state", str(workdir / "state.json")]
    map_cfg = sb.mapper_config(cache_path=str(workdir.parent / "cache.sqlite"))
    tgt_cfg = sb.target_config(batch_size_rows=20, dead_letter_path=str(workdir / "dead.jsonl"))
    logs = {name: (workdir / f"{name}.log").open("wb") for name in (TAP, MAPPER, TARGET)}
    pipe = subprocess.PIPE
    tap = subprocess.Popen(tap_cmd, stdout=pipe, stderr=logs[TAP])
    mapper = subprocess.Popen(
        [executable(MAPPER), "--config", str(write_config(workdir, MAPPER, map_cfg))],
        stdin=pipe,
        stdout=pipe,
        stderr=logs[MAPPER],
    )
    target = subprocess.Popen(
        [executable(TARGET), "--config", str(write_config(workdir, TARGET, tgt_cfg))],
        stdin=pipe,
        stdout=pipe,
        stderr=logs[TARGET],
    )
    for handle in logs.values():
        handle.close()
    assert tap.stdout and mapper.stdin and mapper.stdout and target.stdin and target.stdout
    relays = {TAP: Relay(tap.stdout, mapper.stdin), MAPPER: Relay(mapper.stdout, target.stdin)}
    threads = [relay.start() for relay in relays.values()]
    states: list[tuple[Any, dict[str, dict[str, Any]]]] = []

    def read_states(out: IO[bytes] = target.stdout) -> None:
        for raw in out:
            if raw.strip().startswith(b"{"):
                # Landed only grows: what holds now held no later than the moment STATE was written.
                states.append((json.loads(raw), sb.obs.landed_copy()))

    reader = threading.Thread(target=read_states, daemon=True)
    reader.start()
    return Watched({TAP: tap, MAPPER: mapper, TARGET: target}, relays, threads, states, reader)


def records_before(lines: list[Line], index: int) -> list[Line]:
    return [line for line in lines[:index] if line.kind == "RECORD" and line.stream == "people"]


def check_mapper_order(run: Watched) -> None:
    """Each STATE the mapper forwards comes after every record the tap sent before that STATE."""
    tap_lines, map_lines = run.relays[TAP].lines, run.relays[MAPPER].lines
    for i, line in enumerate(map_lines):
        if line.kind != "STATE":
            continue
        j = next(k for k, t in enumerate(tap_lines) if t.kind == "STATE" and t.value == line.value)
        sent = {r.cio_id for r in records_before(tap_lines, j)}
        forwarded = {r.cio_id for r in records_before(map_lines, i)}
        assert sent <= forwarded, (
            f"mapper STATE #{i} forwarded ahead of {len(sent - forwarded)} records"
        )


def check_target_states(sb: Sandbox, run: Watched) -> None:
    """Each STATE the target emitted was emitted only once every record before it was held."""
    people = {p.cio_id: p for p in sb.world.iter_people()}
    map_lines = run.relays[MAPPER].lines
    for value, landed in run.target_states:
        j = next(k for k, m in enumerate(map_lines) if m.kind == "STATE" and m.value == value)
        behind = []
        for record in records_before(map_lines, j):
            traits = current_traits(people[record.cio_id], landed)
            if (traits.get("EV_Status"), traits.get("EV_SubStatus")) != record.ev:
                behind.append(record.cio_id)
        assert not behind, f"target STATE ahead of {len(behind)} records: {behind[:5]}"


def wait_for_writes(sb: Sandbox, run: Watched, count: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while sum(sb.obs.writes.values()) < count and time.monotonic() < deadline:
        if any(proc.poll() is not None for proc in run.procs.values()):
            return
        time.sleep(0.02)


def wait_for_requests(sb: Sandbox, run: Watched, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while sb.obs.requests_to("app") < count and time.monotonic() < deadline:
        if any(proc.poll() is not None for proc in run.procs.values()):
            return
        time.sleep(0.01)


def test_kill_each_process_then_rerun_to_full_coverage(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    sb = make_sandbox(World(seed=SEED % 1000, people=PEOPLE))
    sb.obs.faults.app_rate_limit = 0
    sb.obs.faults.app_latency = 0.15
    sb.obs.faults.pipelines_latency = 0.05
    state = None
    for n, (victim, sig) in enumerate(KILLS):
        before = sum(sb.obs.writes.values())
        run = start(sb, tmp_path / f"run{n}", state)
        if (
            victim == TAP
        ):  # the tap is done before most writes land: its kill point is a request count
            wait_for_requests(sb, run, sb.obs.requests_to("app") + rng.randint(3, 15))
        else:
            wait_for_writes(sb, run, before + rng.randint(5, 45))
        assert run.procs[victim].poll() is None, f"{victim} ended before its kill point (run {n})"
        run.procs[victim].send_signal(sig)
        codes = run.wait()
        # A run cut short never reports success.
        assert any(code != 0 for code in codes.values()), (victim, sig, codes)
        # (-SIGTERM: the signal came before the SDK installed its handler)
        assert codes[victim] in (-signal.SIGKILL, -signal.SIGTERM, 128 + signal.SIGTERM), codes
        check_mapper_order(run)
        check_target_states(sb, run)
        if run.target_states:
            state = run.target_states[-1][0]
    final = start(sb, tmp_path / "final", state)
    codes = final.wait()
    logs = {name: (tmp_path / "final" / f"{name}.log").read_text()[-1500:] for name in codes}
    assert all(code == 0 for code in codes.values()), (codes, logs)
    check_mapper_order(final)
    check_target_states(sb, final)
    report = evaluate(sb.world, sb.obs.landed_copy(), sb.obs.writes)
    assert report.missing == []
    assert report.coverage == 1.0
    assert report.false_invalid == 0, report.wrong[:10]
    # At least once: a write in flight at a kill may land again on the re-run, never more.
    assert max(sb.obs.writes.values()) <= 2


def test_a_terminated_tap_exits_non_zero_after_writing_its_state(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    """SIGTERM mid-extraction: the state reached is written, and the exit code says the run stopped.

    The SDK exits 0 here, which makes `meltano run` record an extraction cut short as a success.
    """
    sb = make_sandbox(World(seed=62, people=300))
    sb.obs.faults.app_rate_limit = 0
    sb.obs.faults.app_latency = 0.2
    cfg = write_config(
        tmp_path, TAP, sb.tap_config(requests_per_second=200, page_size=20, hydration_concurrency=1)
    )
    tap = subprocess.Popen(
        [executable(TAP), "--config", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while sb.obs.requests_to("app") < 4 and time.monotonic() < deadline and tap.poll() is None:
        time.sleep(0.01)
    assert tap.poll() is None, "the tap finished before it could be stopped"
    tap.send_signal(signal.SIGTERM)
    out, err = tap.communicate(timeout=60)
    assert tap.returncode == 128 + signal.SIGTERM, err.decode()[-1500:]
    assert b"Traceback" not in err and b"Stopped by signal 15" in err
    last = json.loads(out.decode().splitlines()[-1])
    assert last["type"] == "STATE"
