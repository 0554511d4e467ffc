"""`report_path`: the run's figures as JSON at the end, what the mapper's `emailverify-report` draws
as "Written to Customer.io"; counts and reasons only, never an address."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from target_customerio_ev.deadletter import MAX_REASONS, OTHER_REASONS, DeadLetters
from target_customerio_ev.landing import LandingReport
from target_customerio_ev.run_report import run_report
from target_customerio_ev.stats import RunStats


def test_a_run_with_dead_letters_writes_its_report(sb, h, tmp_path: Path) -> None:
    people = [p for p in sb.world.iter_people() if p.id]
    sb.obs.faults.pipelines_reject_ids = frozenset(p.id for p in people[:3])
    report_path = tmp_path / "reports" / "target.json"
    h.run_in_process(
        sb.target_config(
            dead_letter_path=str(tmp_path / "dead.jsonl"), report_path=str(report_path)
        ),
        h.singer_lines([h.person_record(p) for p in people[:50]], state_every=25),
    )
    report = json.loads(report_path.read_text())
    assert report["completed"] is True and report["dry_run"] is False
    assert report["counts"]["written"] == 47 and report["counts"]["dead_lettered"] == 3
    assert report["dead_letter_path"] == str(tmp_path / "dead.jsonl")
    assert sum(r["count"] for r in report["dead_letter_reasons"]) == 3
    assert report["landing"]["checked"] is False
    assert report["landing"]["summary"] == "not checked (no app_api_key)"
    text = report_path.read_text()
    assert not any(p.email and p.email.lower() in text.lower() for p in people[:50])
    assert not any(p.id in text for p in people[:3])


def test_reasons_are_masked_and_bounded() -> None:
    letters = DeadLetters(None, logging.getLogger("test"))
    letters.add(stream="people", reason="HTTP 400: john@example.com is not valid")
    letters.add(stream="people", reason="HTTP 400: mary@example.com is not valid")
    for i in range(MAX_REASONS + 5):
        letters.add(stream="people", reason=f"reason {i}")
    reasons = dict(letters.reasons())
    assert reasons["HTTP 400: <email> is not valid"] == 2
    assert reasons[OTHER_REASONS] == 6  # past MAX_REASONS distinct ones
    assert len(reasons) == MAX_REASONS + 1
    report = run_report(
        RunStats(),
        LandingReport.not_checked("dry run"),
        letters,
        dry_run=True,
        completed=False,
    )
    assert "@" not in json.dumps(report)
    assert report["counts"]["written"] == 0 and report["completed"] is False
