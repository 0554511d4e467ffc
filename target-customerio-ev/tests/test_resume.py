"""The real executable killed mid-run: STATE never ahead of what landed; a rerun covers everyone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest

SLOW = {
    "max_batch_messages": 25,
    "batch_size_rows": 50,
    "max_in_flight": 2,
    "checkpoint_interval_seconds": 0.3,
}


class Running:
    """The target as a child process fed on stdin by a thread; STATE lines collected on arrival."""

    def __init__(self, h, tmp_path, config, lines, on_state=None):
        self.on_state = on_state
        self.proc = subprocess.Popen(
            [h.EXECUTABLE, "--config", str(h.write_config(tmp_path, config))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.states: list[dict] = []
        self.stderr = ""
        self._threads = [
            threading.Thread(target=self._feed, args=(lines,), daemon=True),
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._errors, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _feed(self, lines):
        try:
            for line in lines:
                self.proc.stdin.write(line + "\n")
            self.proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def _read(self):
        for line in self.proc.stdout:
            if line.strip():
                self.states.append(json.loads(line))
                if self.on_state is not None:  # judged the moment STATE appears, not after the run
                    self.on_state(self.states[-1])

    def _errors(self):
        self.stderr = self.proc.stderr.read()

    def wait(self, timeout=60):
        self.proc.wait(timeout)
        for t in self._threads[1:]:
            t.join(10)
        return self.proc.returncode


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def landed_up_to(sb, h, people, position):
    landed = sb.obs.landed_copy()
    missing = [
        p.index
        for p in people[:position]
        if h.expected_key(sb.world, p) not in landed and h.expected_key(sb.world, p) is not None
    ]
    return missing


def position(state):
    return state["bookmarks"]["people"]["position"] if state else 0


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_covers_everyone(sb, h, tmp_path):
    people = list(sb.world.iter_people())
    records = [h.person_record(p) for p in people]
    sb.obs.faults.pipelines_latency = 0.1
    ahead: list[tuple[int, list[int]]] = []
    run = Running(
        h,
        tmp_path,
        sb.target_config(**SLOW),
        h.singer_lines(records, state_every=25),
        on_state=lambda st: ahead.append((position(st), landed_up_to(sb, h, people, position(st)))),
    )
    wait_for(lambda: sum(sb.obs.writes.values()) >= 200 and run.states)
    run.proc.send_signal(signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL
    last = run.states[-1]
    assert 0 < position(last) < len(people)  # really killed mid-way, after a checkpoint
    assert len(ahead) == len(run.states)
    assert [
        missing for _, missing in ahead if missing
    ] == []  # no STATE was ever ahead of what had landed
    sb.obs.faults.pipelines_latency = 0.0
    start = position(last)
    rerun = Running(
        h,
        tmp_path,
        sb.target_config(),
        h.singer_lines(records[start:], state_every=25, start=start),
    )
    assert rerun.wait() == 0, rerun.stderr
    assert position(rerun.states[-1]) == len(people)
    expected = {h.expected_key(sb.world, p) for p in people} - {None}
    assert set(sb.obs.landed) == expected  # 100% coverage


@pytest.mark.slow
def test_sigterm_during_a_drain_does_not_acknowledge_the_batch_in_flight(sb, h, tmp_path):
    """meltano/sdk#3775: the SDK's handler re-enters the draining sink; the target must refuse."""
    people = list(sb.world.iter_people())
    sb.obs.faults.pipelines_latency = 1.5
    config = sb.target_config(**{**SLOW, "checkpoint_interval_seconds": 300})
    run = Running(
        h, tmp_path, config, h.singer_lines([h.person_record(p) for p in people], state_every=25)
    )
    wait_for(lambda: sb.obs.requests_to("pipelines") >= 1)  # the first full batch is on the wire
    time.sleep(0.3)  # the next batch is full too: the main thread now waits inside its drain
    run.proc.send_signal(signal.SIGTERM)
    code = run.wait()
    assert code == 128 + signal.SIGTERM, run.stderr
    assert "Stopped by signal 15" in run.stderr and "STATE is not advanced" in run.stderr
    for state in run.states:
        assert landed_up_to(sb, h, people, position(state)) == []
    assert run.states == []  # the only batch drained so far was in flight: nothing acknowledged
