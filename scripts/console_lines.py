"""Count the lines of a run's console log by kind: METRIC, progress, summary, other.

python scripts/console_lines.py .meltano/demo/meltano.log   # `make demo`'s log of every run
python scripts/console_lines.py tap.log mapper.log target.log

A line belongs to the summary from the mapper's "Verification summary:" to the next log line (its
table and Unknowns), plus the tap's and the target's one-line summaries.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

KINDS = ("METRIC", "progress", "summary", "other")
#: A log line of Meltano or of a plugin (the mapper's summary table's lines are not).
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT|\d{4}-\d\d-\d\d \d\d:|\S+ +\| )|\[\w+ *\] ")
SUMMARY = (
    "Verification summary:",  # mapper (then its table)
    "Summary: written",  # target
    "people: ",  # tap: "people: N records in S s ..." (not the listing lines below)
)
NOT_SUMMARY = ("people: listing", "people: hydrating")


def classify(lines: Iterable[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    in_table = False
    for line in lines:
        if not line.strip():
            continue
        is_log = bool(LOG_LINE.search(line))
        if is_log:
            in_table = False
        if "METRIC" in line:
            kind = "METRIC"
        elif "Progress: " in line:
            kind = "progress"
        elif in_table or (
            any(mark in line for mark in SUMMARY) and not any(n in line for n in NOT_SUMMARY)
        ):
            kind = "summary"
            in_table = in_table or "Verification summary:" in line
        else:
            kind = "other"
        counts[kind] += 1
    return counts


def main(paths: list[str]) -> int:
    counts: Counter[str] = Counter()
    for path in paths:
        counts += classify(Path(path).read_text(encoding="utf-8", errors="replace").splitlines())
    total = sum(counts.values())
    for kind in KINDS:
        print(f"{kind:<9} {counts[kind]:>6}  {100 * counts[kind] / max(total, 1):5.1f}%")
    print(f"{'total':<9} {total:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
