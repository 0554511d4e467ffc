"""Faults injected into the sandbox while the real pipeline (tap | mapper | target) runs.

For each fault: the run finishes (or, when the fault is permanent, fails with one clear line), every
Person with an address ends with a verdict, no fault ever produces an Invalid, and no Person is
written twice. See the fault matrix in the README's closing note.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cio_sandbox import Sandbox, World
from cio_sandbox.pipeline import TAP, TARGET, PipedRun, run_piped
from cio_sandbox.report import RunReport, evaluate

pytestmark = pytest.mark.slow

FAST_TAP = {"requests_per_second": 200}
# What only describes the moment of the probe, never the mailbox (the mapper's own list).
TRANSIENT = {
    "smtp_timeout",
    "smtp_connection_failed",
    "greylisted",
    "smtp_blocked",
    "dns_error",
    "smtp_unavailable",
}


def tails(run: PipedRun) -> dict[str, str]:
    return {name: log[-1500:] for name, log in run.logs.items()}


def assert_sound(sb: Sandbox, run: PipedRun) -> RunReport:
    """Finished, full coverage, no false Invalid, each Person written at most once, no traceback."""
    assert run.ok, tails(run)
    for name, log in run.logs.items():
        assert "Traceback" not in log, f"{name}: {log[-1500:]}"
    report = evaluate(sb.world, sb.obs.landed_copy(), sb.obs.writes)
    assert report.missing == [] and report.coverage == 1.0
    assert report.false_invalid == 0, report.wrong[:10]
    assert max(sb.obs.writes.values()) == 1, "a fault must never cause a second write"
    return report


def storm_on_first_request(sb: Sandbox, service: str, seconds: float) -> threading.Thread:
    """A 429 storm that starts with the service's first request (plugins take a while to start)."""

    def watch() -> None:
        deadline = time.monotonic() + 120
        while sb.obs.requests_to(service) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        sb.obs.faults.storm(service, seconds)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def transient_wrong(report: RunReport) -> list[tuple[str, str, str, str]]:
    """People holding a momentary Unknown that is not their true verdict."""
    return [w for w in report.wrong if w[1] == "Unknown" and w[2] in TRANSIENT]


# ------------------------------------------------------------------------------------- App API
def test_app_api_storm_errors_drops_and_stalls(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    sb = make_sandbox(World(seed=41, people=300))
    faults = sb.obs.faults
    faults.app_rate_limit = 0
    faults.app_error_rate = 0.05  # 503s
    faults.app_drop_rate = 0.05  # connection reset, no answer
    faults.app_stall_rate, faults.app_stall_seconds = 0.05, 5.0  # outlasts the 2 s request_timeout
    storm_on_first_request(sb, "app", 2.0)  # every request 429 + Retry-After for 2 s
    run = run_piped(sb, tmp_path, tap={**FAST_TAP, "page_size": 10, "request_timeout": 2})
    injected = sb.obs.faults_injected
    assert {"app_429_storm", "app_error", "app_drop", "app_stall"} <= set(injected), injected
    report = assert_sound(sb, run)
    assert report.accuracy >= 0.97, report.wrong[:10]


# ------------------------------------------------------------------------------------- Pipelines
def test_pipelines_storm_errors_timeouts_lost_answers_and_a_rejected_batch(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    sb = make_sandbox(World(seed=42, people=300))
    faults = sb.obs.faults
    faults.app_rate_limit = 0
    faults.pipelines_error_rate = 0.1  # 500s
    faults.pipelines_timeout_rate, faults.pipelines_timeout_seconds = 0.1, 3.0
    faults.pipelines_lost_answer_rate = 0.1  # landed, but the answer never comes: a replay follows
    rejected = [
        p for p in sb.world.iter_people() if p.id and p.email and "EV_Status" not in p.attributes
    ][:4]
    faults.pipelines_reject_ids = frozenset(p.id for p in rejected)
    storm_on_first_request(sb, "pipelines", 2.0)
    target = {"max_batch_messages": 10, "request_timeout": 1.0, "max_backoff_seconds": 2.0}
    run = run_piped(sb, tmp_path / "first", tap=FAST_TAP, target=target)
    injected = sb.obs.faults_injected
    assert {
        "pipelines_429_storm",
        "pipelines_error",
        "pipelines_timeout",
        "pipelines_lost_answer",
        "pipelines_reject",
    } <= set(injected), injected
    assert run.ok, tails(run)
    # The rejected calls are dead-lettered with the API's reason, never dropped silently ...
    dead = [
        json.loads(line)
        for line in (tmp_path / "first" / "dead-letter.jsonl").read_text().splitlines()
    ]
    assert sorted(d["cio_id"] for d in dead) == sorted(p.cio_id for p in rejected)
    assert all("rejected (fault injection)" in json.dumps(d) for d in dead)
    # ... and everyone else landed exactly once, replays of lost answers included.
    landed = sb.obs.landed_copy()
    assert not {p.cio_id for p in rejected} & set(landed)
    assert max(sb.obs.writes.values()) == 1
    report = evaluate(sb.world, landed, sb.obs.writes)
    assert set(report.missing) <= {p.cio_id for p in rejected} and report.false_invalid == 0

    # Once the API accepts them again, one re-run lands exactly the rejected People.
    sb.obs.reset_faults()
    sb.obs.faults.app_rate_limit = 0
    writes_before = sum(sb.obs.writes.values())
    rerun = run_piped(
        sb,
        tmp_path / "rerun",
        tap=FAST_TAP,
        state=run.final_state,
        mapper={"cache_path": str(tmp_path / "first" / "cache.sqlite")},
    )
    assert_sound(sb, rerun)
    assert sum(sb.obs.writes.values()) - writes_before == len(rejected)


# ------------------------------------------------------------------------------------- permanent
def test_permanent_outages_fail_with_one_clear_line(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    sb = make_sandbox(World(seed=44, people=50))
    sb.obs.faults.app_rate_limit = 0
    sb.obs.faults.app_error_rate = 1.0
    run = run_piped(
        sb, tmp_path / "app", tap={**FAST_TAP, "max_retries": 1, "max_retry_seconds": 2}
    )
    assert run.returncodes[TAP] != 0
    assert "Traceback" not in run.logs[TAP]
    errors = [line for line in run.logs[TAP].splitlines() if "ERROR" in line]
    assert errors and "503" in errors[-1] and "try again later" in errors[-1], run.logs[TAP][-1500:]
    assert sb.obs.landed_copy() == {}

    sb.obs.reset_faults()
    sb.obs.faults.app_rate_limit = 0
    sb.obs.faults.pipelines_error_rate = 1.0
    run = run_piped(
        sb,
        tmp_path / "pipelines",
        tap=FAST_TAP,
        target={"max_retries": 1, "max_backoff_seconds": 0.2},
    )
    assert run.returncodes[TARGET] != 0
    assert "Traceback" not in run.logs[TARGET]
    errors = [line for line in run.logs[TARGET].splitlines() if "ERROR" in line]
    assert errors and "still failing" in errors[-1], run.logs[TARGET][-1500:]
    assert run.states == [], "no STATE may acknowledge records that did not land"
    assert sb.obs.landed_copy() == {}


# ------------------------------------------------------------------------------------- DNS and SMTP
@pytest.fixture(scope="module")
def mail_faulted(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Sandbox, PipedRun, Path]]:
    """One run under DNS and SMTP faults on otherwise healthy domains and hosts."""
    workdir = tmp_path_factory.mktemp("mail-faults")
    with Sandbox(World(seed=43, people=300)) as sb:
        faults = sb.obs.faults
        faults.app_rate_limit = 0
        faults.dns_servfail_rate = 0.1
        faults.dns_drop_rate = 0.05  # the resolver times out
        faults.smtp_fault = ("greylist", "tarpit", "disconnect", "busy_421")
        faults.smtp_fault_rate = 0.3
        faults.smtp_tarpit_seconds = 6.0  # longer than the mapper's smtp_timeout
        run = run_piped(sb, workdir / "first", tap=FAST_TAP)
        yield sb, run, workdir


def rerun_after_faults(
    sb: Sandbox, faulted: PipedRun, workdir: Path, name: str, mapper: dict[str, Any]
) -> RunReport:
    sb.obs.reset_faults()
    sb.obs.faults.app_rate_limit = 0
    rerun = run_piped(
        sb,
        workdir / name,
        tap=FAST_TAP,
        state=faulted.final_state,
        mapper={"cache_path": str(workdir / "first" / "cache.sqlite"), **mapper},
    )
    assert rerun.ok, tails(rerun)
    return evaluate(sb.world, sb.obs.landed_copy(), sb.obs.writes)


def test_dns_and_smtp_faults_give_unknown_never_invalid(mail_faulted) -> None:
    sb, run, _ = mail_faulted
    injected = sb.obs.faults_injected
    expected = {
        "dns_servfail",
        "dns_drop",
        "smtp_greylist",
        "smtp_tarpit",
        "smtp_disconnect",
        "smtp_busy_421",
    }
    assert expected <= set(injected), injected
    report = assert_sound(sb, run)
    # Every verdict the faults changed is a transient Unknown; none is Invalid or anything else.
    assert report.wrong, "the faults should have cost some verdicts"
    assert report.wrong == transient_wrong(report), report.wrong


def test_the_next_scheduled_run_reverifies_unknowns_caused_by_faults(mail_faulted) -> None:
    """Transient Unknowns are trusted for `reverify_unknown_after_hours` only (default 20 h, so a
    daily run retries them); past that window a re-run with default caching re-verifies exactly
    them."""
    sb, run, workdir = mail_faulted
    report = rerun_after_faults(
        sb, run, workdir, "rerun-default", {"reverify_unknown_after_hours": 0}
    )
    assert report.false_invalid == 0 and report.coverage == 1.0
    assert transient_wrong(report) == [], report.wrong[:10]


def test_a_rerun_that_reuses_nothing_gives_every_person_a_correct_verdict(mail_faulted) -> None:
    sb, run, workdir = mail_faulted
    writes_before = sb.obs.writes.copy()
    report = rerun_after_faults(
        sb, run, workdir, "rerun-fresh", {"reverify_after_days": 0, "cache_ttl_days": 0}
    )
    assert report.false_invalid == 0 and report.coverage == 1.0
    assert transient_wrong(report) == [], report.wrong[:10]
    assert max((sb.obs.writes - writes_before).values()) == 1, "one write per Person per run"
