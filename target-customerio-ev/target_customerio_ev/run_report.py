"""The run's figures as JSON in `report_path`: for dashboards, and for the mapper's
`emailverify-report`, which draws them as the HTML report's "Written to Customer.io" part.

Counts and reasons only: no identifier, and the reasons with every address masked
(`deadletter.mask_emails`).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from .deadletter import DeadLetters
from .landing import LandingReport
from .stats import RunStats


def run_report(
    stats: RunStats,
    landing: LandingReport,
    dead_letters: DeadLetters,
    *,
    dry_run: bool,
    completed: bool,
) -> dict[str, Any]:
    """What `report_path` holds."""
    return {
        "completed": completed,
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "dry_run": dry_run,
        "counts": stats.snapshot(),
        "landing": {
            "checked": landing.checked,
            "passed": landing.passed,
            "reason": landing.reason,
            "sampled": sum(landing.sampled.values()),
            "shown": sum(landing.shown.values()),
            "missing": sum(landing.missing.values()),
            "absent": sum(landing.absent.values()),
            "unread": sum(landing.unread.values()),
            "summary": landing.phrase().removeprefix("landing: "),
        },
        "dead_letter_path": str(dead_letters.path) if dead_letters.path else None,
        "dead_letter_reasons": [
            {"reason": reason, "count": n} for reason, n in dead_letters.reasons()
        ],
    }


def write_report(path: str, report: dict[str, Any]) -> None:
    """Through a temporary file beside it: a reader never sees half a report."""
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    tmp.replace(target)
