"""Replies about the probe itself stop the run: when mail servers refuse our envelope sender (an
unroutable `mail_from` domain), every verdict would describe us, not the addresses. The mapper
stops with one line that says what to fix, exits non-zero, and nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from cio_sandbox import Sandbox, World
from cio_sandbox.pipeline import MAPPER, run_piped
from cio_sandbox.report import evaluate

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("code", [450, 550])
def test_an_unroutable_mail_from_domain_stops_the_run_before_any_write(
    tmp_path: Path, code: int
) -> None:
    with Sandbox(World(seed=23, people=400)) as sb:
        sb.obs.faults.app_rate_limit = 0
        sb.obs.faults.smtp_sender_domain_check = code  # every host refuses an unknown domain
        run = run_piped(
            sb,
            tmp_path,
            tap={"requests_per_second": 200},
            mapper={"mail_from": "probe@unroutable.invalid"},
        )
        writes = dict(sb.obs.writes)
    log = run.logs[MAPPER]
    assert run.returncodes[MAPPER] == 1, log[-3000:]
    assert "Traceback" not in log
    errors = [line for line in log.splitlines() if "| ERROR" in line]
    assert len(errors) == 1, errors
    assert "refuse the probe itself" in errors[0] and "mail_from" in errors[0], errors[0]
    assert "probe@unroutable.invalid" in errors[0]  # our own sender, not a Person's address
    assert writes == {}, f"{len(writes)} People were written by a run that had to stop"


def test_with_a_sender_domain_that_resolves_the_same_hosts_answer_about_mailboxes(
    tmp_path: Path,
) -> None:
    with Sandbox(World(seed=23, people=400)) as sb:
        sb.obs.faults.app_rate_limit = 0
        sb.obs.faults.smtp_sender_domain_check = 550
        run = run_piped(sb, tmp_path, tap={"requests_per_second": 200})
        report = evaluate(sb.world, sb.obs.landed_copy(), sb.obs.writes)
    assert run.ok, {name: log[-2000:] for name, log in run.logs.items()}
    assert report.coverage == 1.0 and report.false_invalid == 0
