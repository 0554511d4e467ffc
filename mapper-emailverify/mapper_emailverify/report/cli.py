"""`emailverify-report`: the HTML report from the mapper's JSON report (`report_path`) and,
optionally, the target's (target-customerio-ev's `report_path`), for when the page should also
show what landed and what was dead-lettered: the mapper alone cannot know.

    emailverify-report --mapper-report mapper.json [--target-report target.json] --html out.html
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mapper_emailverify.report.output import write_atomically
from mapper_emailverify.report.page import render_html


def _read(path: Path, what: str) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SystemExit(f"emailverify-report: cannot read {what} {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise SystemExit(f"emailverify-report: {what} {path} is not JSON ({exc})") from None
    if not isinstance(loaded, dict):
        raise SystemExit(f"emailverify-report: {what} {path} is not a JSON object")
    return loaded


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="emailverify-report",
        description="Draw the run report as one self-contained HTML page (opens offline).",
    )
    parser.add_argument(
        "--mapper-report",
        type=Path,
        required=True,
        metavar="JSON",
        help="the mapper's report_path file",
    )
    parser.add_argument(
        "--target-report",
        type=Path,
        metavar="JSON",
        help="target-customerio-ev's report_path file: adds what landed and what was dead-lettered",
    )
    parser.add_argument("--html", type=Path, required=True, metavar="FILE", help="page to write")
    args = parser.parse_args(argv)
    mapper = _read(args.mapper_report, "mapper report")
    target = _read(args.target_report, "target report") if args.target_report else None
    page = render_html(mapper, target)
    out = args.html.expanduser()
    try:
        write_atomically(out, page)
    except OSError as exc:
        raise SystemExit(f"emailverify-report: cannot write {out}: {exc.strerror}") from None
    print(f"Wrote {out} ({len(page.encode()) // 1024:,} KiB).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
