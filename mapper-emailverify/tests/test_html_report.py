"""The HTML report without a browser: `render_html` is a pure function of the JSON report, so
hostile, empty and partial reports are fed to it directly; the figures it reads (domains by
verdict, throughput samples) are checked where `Progress` collects them.

The browser test (`test_html_report_browser.py`) opens a real run's page in Chromium.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from mapper_emailverify.report import cli
from mapper_emailverify.report.charts import label
from mapper_emailverify.report.page import render_html
from mapper_emailverify.stream_map.domain_tally import DomainTally, domain_of, top
from mapper_emailverify.stream_map.progress import MAX_SAMPLES, Progress

HOSTILE = [
    "</script><script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "<b>bold</b>.example",
    "evil.example&amp;<!--",
]


def a_report(**over: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "records": 10,
        "verified": 8,
        "elapsed_seconds": 2.0,
        "records_per_second": 5.0,
        "verifications_per_second": 4.0,
        "by_source": {"engine": 8, "fresh": 0, "cache": 1, "local": 1, "kept": 0},
        "by_status": {"Valid": 4, "Invalid": 3, "Catch-All": 1, "Disposable": 0, "Unknown": 2},
        "by_substatus": {
            "Catch-All": {"catch_all": 1},
            "Invalid": {"mailbox_not_found": 3},
            "Unknown": {"greylisted": 1, "no_email": 1},
            "Valid": {"mailbox_exists": 4},
        },
        "unknowns": [
            {
                "provider": "zoho",
                "cause": "greylisted",
                "count": 1,
                "example": "450 4.2.0 <address>: Greylisted",
                "advice": "Raise `greylist_max_wait`.",
            }
        ],
        "domains": {
            "invalid": [{"domain": "bad.example", "count": 3}],
            "catch_all": [{"domain": "all.example", "count": 1}],
            "counts_exact": True,
        },
        "throughput": {
            "interval_seconds": 1.0,
            "samples": [
                {"seconds": 0.0, "records": 0, "verified": 0},
                {"seconds": 1.0, "records": 6, "verified": 5},
                {"seconds": 2.0, "records": 10, "verified": 8},
            ],
        },
        "completed": True,
    }
    report.update(over)
    return report


def a_target_report(**over: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "completed": True,
        "dry_run": False,
        "counts": {"written": 7, "skipped_unchanged": 1, "dead_lettered": 2, "requests": 3},
        "landing": {"summary": "5 of 5 sampled People show the new values"},
        "dead_letter_path": "output/dead-letter.jsonl",
        "dead_letter_reasons": [{"reason": "HTTP 400: traits too large", "count": 2}],
    }
    report.update(over)
    return report


def markup_outside_scripts(page: str) -> str:
    """The page without its <script> elements' contents (plotly.js and the figures' JSON)."""
    return re.sub(r"<script>.*?</script>", "<script></script>", page, flags=re.S)


def test_a_full_report_has_every_section_and_chart() -> None:
    page = render_html(a_report(), a_target_report())
    for section in (
        "verdicts",
        "unknowns",
        "invalid-domains",
        "catch-all-domains",
        "throughput",
        "target",
    ):
        assert f'<section id="{section}">' in page
    charts = set(re.findall(r'data-chart="([^"]+)"', page))
    assert charts == {
        "status",
        "substatus",
        "unknowns",
        "invalid-domains",
        "catch-all-domains",
        "throughput",
        "target",
    }
    assert page.count("<script>") - page.count('<script type="text/javascript">') >= 1
    assert "Plotly.newPlot" in page
    assert "Written 7; skipped unchanged 1" in page
    assert "HTTP 400: traits too large" in page and "output/dead-letter.jsonl" in page
    assert "Landing check: 5 of 5 sampled People show the new values." in page
    assert "<code>greylist_max_wait</code>" in page  # the advice's settings set as code


def test_the_page_needs_no_network() -> None:
    page = render_html(a_report(), a_target_report())
    markup = markup_outside_scripts(page)
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", markup, flags=re.I)
    assert "cdn.plot.ly" not in markup
    assert 3_000_000 < len(page) < 8_000_000  # plotly.js inline, once
    assert page.count("Plotly.newPlot") == 7


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_strings_from_the_data_are_escaped(hostile: str) -> None:
    report = a_report(
        domains={
            "invalid": [{"domain": hostile, "count": 3}],
            "catch_all": [{"domain": hostile, "count": 1}],
        },
        unknowns=[
            {
                "provider": hostile,
                "cause": hostile,
                "count": 2,
                "example": hostile,
                "advice": f"`{hostile}`",
            }
        ],
        by_substatus={"Invalid": {hostile: 3}},
        finished_at=hostile,
    )
    target = a_target_report(dead_letter_reasons=[{"reason": hostile, "count": 1}])
    page = render_html(report, target)
    markup = markup_outside_scripts(page)
    assert hostile not in page  # neither in the markup nor in a figure's JSON
    assert "<img" not in markup and "<b>" not in page and "<script>alert" not in page
    assert "&lt;" in markup  # shown as typed, escaped
    # Inside the scripts, no string closes the script element early.
    for script in re.findall(r"<script[^>]*>(.*?)</script>", page, flags=re.S):
        assert "</script" not in script.lower()


def test_labels_are_escaped_and_cut() -> None:
    assert label("<b>x</b>") == "&lt;b&gt;x&lt;/b&gt;"
    assert label("a" * 300).endswith("…") and len(label("a" * 300)) == 48


def test_an_empty_report_renders_without_charts() -> None:
    page = render_html({})
    assert "<!DOCTYPE html>" in page and "</html>" in page
    assert "No verdicts in this report." in page
    assert "The engine gave no Unknown verdict." in page
    assert "No Invalid verdicts by domain." in page
    assert "Too short a run to draw." in page
    assert "data-chart=" not in page
    assert "<script" not in page  # no chart: plotly.js is left out
    assert len(page) < 20_000


def test_a_report_without_the_target_part_says_how_to_add_it() -> None:
    page = render_html(a_report())
    assert "The target's report was not given" in page
    assert "emailverify-report --mapper-report" in page
    assert 'data-chart="target"' not in page


def test_malformed_values_read_as_empty() -> None:
    report = a_report(
        records="many",
        by_status=["Valid"],
        by_substatus={"Valid": "lots", "Invalid": {"mailbox_not_found": "3", "x": True}},
        unknowns=[None, "x", {"count": "2"}],
        domains={"invalid": {"a": 1}, "catch_all": [{"domain": None, "count": float("nan")}]},
        throughput={"samples": "none"},
    )
    page = render_html(report, {"counts": ["written"], "landing": None})
    assert '<section id="target">' in page
    assert "interrupted" not in page.split("<main>")[0]


def test_an_interrupted_run_says_so() -> None:
    page = render_html(a_report(completed=False), a_target_report(completed=False))
    assert "The run was interrupted" in page
    assert "The target did not finish its run." in page


def test_the_command_draws_the_page_from_both_reports(tmp_path: Path, capsys: Any) -> None:
    mapper, target, out = tmp_path / "m.json", tmp_path / "t.json", tmp_path / "out" / "r.html"
    mapper.write_text(json.dumps(a_report()))
    target.write_text(json.dumps(a_target_report()))
    assert (
        cli.main(
            ["--mapper-report", str(mapper), "--target-report", str(target), "--html", str(out)]
        )
        == 0
    )
    page = out.read_text(encoding="utf-8")
    assert 'data-chart="target"' in page and "Written 7" in page
    assert "Wrote" in capsys.readouterr().out
    assert cli.main(["--mapper-report", str(mapper), "--html", str(out)]) == 0
    assert "The target's report was not given" in out.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read mapper report"), ("{", "is not JSON"), ("[1]", "is not a JSON object")],
)
def test_the_command_fails_with_one_line(tmp_path: Path, content: str | None, message: str) -> None:
    mapper = tmp_path / "m.json"
    if content is not None:
        mapper.write_text(content)
    with pytest.raises(SystemExit) as stop:
        cli.main(["--mapper-report", str(mapper), "--html", str(tmp_path / "r.html")])
    assert message in str(stop.value)
    assert not (tmp_path / "r.html").exists()


# -- what Progress collects for the page ---------------------------------------------------------


def test_domains_are_counted_for_invalid_and_catch_all_only_never_the_address() -> None:
    progress = Progress(logging.getLogger("test"))
    for address in ("a@Bad.Example", "b@bad.example ", "c@bad.example", "x@other.example"):
        progress.count_domain("Invalid", address)
    progress.count_engine_domain("Catch-All", "d@all.example")
    progress.count_engine_domain("Invalid", "z@bad.example")  # the engine thread's, added up
    progress.count_domain("Valid", "e@good.example")
    progress.count_domain("Invalid", "no at sign, maybe a name")
    progress.count_domain("Invalid", "trailing@")
    progress.count_domain("Invalid", '"quoted@local"@quoted.example')
    domains = progress.snapshot()["domains"]
    assert domains["invalid"] == [
        {"domain": "bad.example", "count": 4},
        {"domain": "other.example", "count": 1},
        {"domain": "quoted.example", "count": 1},
    ]
    assert domains["catch_all"] == [{"domain": "all.example", "count": 1}]
    assert domains["counts_exact"] is True
    assert "@" not in json.dumps(domains)


def test_domain_of_keeps_only_what_follows_the_last_at_sign() -> None:
    assert domain_of("john@Example.COM") == "example.com"
    assert domain_of("john.smith") is None
    assert domain_of("x@" + "a" * 400) == "a" * 253


def test_the_domain_tally_is_bounded() -> None:
    tally = DomainTally(keep=10)
    for _ in range(5):
        tally.add("someone@big.example")
    for i in range(1000):
        tally.add(f"someone@d{i}.example")
    assert len(tally) <= 20 and tally.pruned
    assert top([tally], 1) == [{"domain": "big.example", "count": 5}]


def test_throughput_samples_stay_few_and_evenly_spaced() -> None:
    clock = [1000.0]
    progress = Progress(logging.getLogger("test"), clock=lambda: clock[0])
    for second in range(1, 5001):
        clock[0] = 1000.0 + second
        progress.count("engine", "Valid", "mailbox_exists")
        progress.maybe_sample()
    samples = progress.snapshot()["throughput"]["samples"]
    assert len(samples) <= MAX_SAMPLES + 1
    assert samples[0] == {"seconds": 0.0, "records": 0, "verified": 0}
    assert samples[-1]["seconds"] == 5000.0 and samples[-1]["records"] == 5000
    steady = samples[:-1]  # the last point is the run's end
    gaps = {round(b["seconds"] - a["seconds"], 3) for a, b in itertools.pairwise(steady)}
    assert len(gaps) == 1, gaps  # one steady interval
    assert progress.snapshot()["throughput"]["interval_seconds"] == gaps.pop()


def test_the_json_report_carries_what_the_page_draws(tmp_path: Path) -> None:
    progress = Progress(logging.getLogger("test"))
    progress.count("engine", "Invalid", "mailbox_not_found")
    progress.count_domain("Invalid", "a@bad.example")
    path = tmp_path / "report.json"
    progress.write_report(path)
    report = json.loads(path.read_text())
    assert report["completed"] is True and report["finished_at"].endswith("+00:00")
    assert report["domains"]["invalid"] == [{"domain": "bad.example", "count": 1}]
    assert report["throughput"]["samples"][-1]["records"] == 1
    page = render_html(report)
    assert "bad.example" in page and 'data-chart="throughput"' in page
