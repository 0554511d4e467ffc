"""`render_html(report, target)`: the mapper's JSON report (and the target's, when given) as one
self-contained HTML page: styles and plotly.js inline, no request leaves the page.

A pure function of its inputs, so tests feed it hostile or empty reports. Every string from the
data is escaped here (`_e`) or in `charts.label`; the only unescaped HTML is this module's own
markup and what plotly generates.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

from plotly.offline import get_plotlyjs

from mapper_emailverify.report import charts
from mapper_emailverify.report.data import count, counts, mapping, number, rows, text
from mapper_emailverify.taxonomy import Status

TITLE = "Email verification report"
_CODE = re.compile(r"`([^`]+)`")

_STYLE = """
:root { color-scheme: light; --ink: #1f2933; --muted: #5f6b7a; --line: #e3e8ee; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--ink); background: #f5f7fa; }
header { background: #102a43; color: #fff; padding: 24px 32px; }
header h1 { margin: 0 0 4px; font-size: 24px; }
header p { margin: 0; color: #bcccdc; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 48px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 10px;
  padding: 20px 24px; margin: 0 0 20px; }
h2 { margin: 0 0 4px; font-size: 19px; }
.lead { margin: 0 0 12px; color: var(--muted); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px;
  margin: 0 0 20px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px;
  border-top: 4px solid var(--accent, #486581); }
.card .n { font-size: 26px; font-weight: 650; }
.card .w { color: var(--muted); font-size: 13px; }
/* Two fixed tracks: a chart is drawn as soon as its script is parsed, before the next one exists,
   so its cell must already have its final width then. */
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
@media (max-width: 820px) { .pair { grid-template-columns: 1fr; } }
.pair > * { min-width: 0; }
.chart { min-height: 120px; overflow: hidden; }
table { border-collapse: collapse; width: 100%; margin: 8px 0 0; font-size: 14px; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code { background: #f0f4f8; padding: 1px 4px; border-radius: 4px; font-size: 13px; }
.none { color: var(--muted); font-style: italic; }
.warn { color: #8d2b0b; }
details { margin-top: 8px; }
summary { cursor: pointer; color: var(--muted); }
footer { color: var(--muted); font-size: 13px; text-align: center; padding: 0 32px 32px; }
"""


def _e(value: Any) -> str:
    """Escaped for HTML text and attribute values."""
    return html.escape(text(value), quote=True)


def _prose(value: Any) -> str:
    """Escaped, then `code` spans (the advice names settings that way) set as <code>."""
    return _CODE.sub(r"<code>\1</code>", _e(value))


def _n(value: Any) -> str:
    return f"{count(value):,}"


def _table(head: list[str], body: list[list[str]], numeric: set[int] | None = None) -> str:
    """A table of cells that are already HTML (escape before calling)."""
    numeric = numeric or set()
    cls = [' class="num"' if i in numeric else "" for i in range(len(head))]
    lines = [
        "<table><thead><tr>",
        *(f"<th{cls[i]}>{cell}</th>" for i, cell in enumerate(head)),
        "</tr></thead><tbody>",
    ]
    for row in body:
        lines.append("<tr>" + "".join(f"<td{cls[i]}>{c}</td>" for i, c in enumerate(row)) + "</tr>")
    lines.append("</tbody></table>")
    return "".join(lines)


class _Page:
    """Collects the sections and knows whether any chart needs plotly.js."""

    def __init__(self) -> None:
        self.charts = 0

    def chart(self, name: str, figure: Any) -> str:
        if figure is None:
            return ""
        self.charts += 1
        return f'<div class="chart" data-chart="{_e(name)}">{charts.to_div(name, figure)}</div>'


def render_html(
    report: Mapping[str, Any], target: Mapping[str, Any] | None = None, *, title: str = TITLE
) -> str:
    """The page for `report` (what `report_path` holds) and `target` (what the target's
    `report_path` holds; None when the target did not run or its report was not given)."""
    report = mapping(report)
    page = _Page()
    body = [
        _overview(report),
        _verdicts(page, report),
        _unknowns(page, report),
        _domains(page, report),
        _throughput(page, report),
        _target(page, None if target is None else mapping(target)),
    ]
    script = f"<script>{get_plotlyjs()}</script>" if page.charts else ""
    finished = text(report.get("finished_at"))
    state = "completed" if report.get("completed", True) is not False else "interrupted"
    subtitle = f"mapper-emailverify run, {state}" + (f", finished {finished}" if finished else "")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(title)}</title>",
            f"<style>{_STYLE}</style>",
            script,
            "</head><body>",
            f"<header><h1>{_e(title)}</h1><p>{_e(subtitle)}</p></header>",
            "<main>",
            *body,
            "</main>",
            "<footer>No email address appears in this report: domains only, and every address in "
            "a quoted server reply replaced with &lt;address&gt;.</footer>",
            "</body></html>",
            "",
        ]
    )


def _overview(report: Mapping[str, Any]) -> str:
    total = count(report.get("records"))
    by_status = mapping(report.get("by_status"))
    cards = [
        f'<div class="card"><div class="n">{_n(total)}</div><div class="w">records</div></div>'
    ]
    for status in Status:
        n = count(by_status.get(str(status)))
        share = f" ({n / total:.0%})" if total else ""
        color = charts.STATUS_COLORS[str(status)]
        cards.append(
            f'<div class="card" style="--accent: {color}" data-status="{_e(status)}">'
            f'<div class="n">{_n(n)}</div><div class="w">{_e(status)}{share}</div></div>'
        )
    sources = mapping(report.get("by_source"))
    words = {
        "engine": "verified now",
        "fresh": "already fresh",
        "cache": "from the cache",
        "local": "without an address",
        "kept": "re-check failed, earlier verdict kept",
    }
    parts = [f"{_n(sources.get(k))} {w}" for k, w in words.items() if count(sources.get(k))]
    passthrough = count(report.get("passthrough_records"))
    if passthrough:
        parts.append(f"{_n(passthrough)} records of other streams passed through")
    lead = "; ".join(parts) if parts else "No records were verified."
    warn = (
        '<p class="warn">The run was interrupted: these are the figures up to the stop.</p>'
        if report.get("completed") is False
        else ""
    )
    return f'<div class="cards">{"".join(cards)}</div><p class="lead">{lead}.</p>{warn}'


def _verdicts(page: _Page, report: Mapping[str, Any]) -> str:
    by_substatus = mapping(report.get("by_substatus"))
    table_rows = [
        [_e(status), f"<code>{_e(sub)}</code>", _n(n)]
        for status, subs in by_substatus.items()
        for sub, n in mapping(subs).items()
    ]
    if not table_rows:
        return (
            '<section id="verdicts"><h2>Verdicts</h2>'
            '<p class="none">No verdicts in this report.</p></section>'
        )
    return (
        '<section id="verdicts"><h2>Verdicts</h2>'
        '<p class="lead">Records by <code>EV_Status</code> and, inside, by '
        "<code>EV_SubStatus</code>.</p>"
        '<div class="pair">'
        + page.chart("status", charts.statuses(mapping(report.get("by_status"))))
        + page.chart("substatus", charts.substatuses(by_substatus))
        + "</div>"
        + "<details><summary>As a table</summary>"
        + _table(["EV_Status", "EV_SubStatus", "records"], table_rows, {2})
        + "</details></section>"
    )


def _unknowns(page: _Page, report: Mapping[str, Any]) -> str:
    groups = rows(report.get("unknowns"))
    head = '<section id="unknowns"><h2>Unknowns by provider and cause</h2>'
    if not groups:
        return head + '<p class="none">The engine gave no Unknown verdict.</p></section>'
    table_rows = [
        [
            _n(group.get("count")),
            _e(group.get("provider")),
            f"<code>{_e(group.get('cause'))}</code>",
            f"<q>{_e(group.get('example'))}</q>",
            _prose(group.get("advice")),
        ]
        for group in groups
    ]
    smtp = mapping(report.get("smtp"))
    smtp_words = {
        "greylisted": "addresses greylisted",
        "greylist_resolved": "greylisting resolved on retry",
        "catch_all_probes": "catch-all probes sent",
        "catch_all_skipped": "catch-all probes skipped by a provider rule",
        "catch_all_cached": "catch-all answers from the domain cache",
    }
    smtp_line = ", ".join(f"{_n(smtp[k])} {w}" for k, w in smtp_words.items() if k in smtp)
    return (
        head
        + '<p class="lead">Why the engine could not be certain, and what to do about it.</p>'
        + page.chart("unknowns", charts.unknowns(groups))
        + _table(["Unknowns", "provider", "cause", "example reply", "what to do"], table_rows, {0})
        + (f'<p class="lead">SMTP: {smtp_line}.</p>' if smtp_line else "")
        + "</section>"
    )


def _domains(page: _Page, report: Mapping[str, Any]) -> str:
    found = mapping(report.get("domains"))
    note = (
        ""
        if found.get("counts_exact", True) is not False
        else '<p class="lead">The run met too many domains to count them all: the counts are '
        "lower bounds.</p>"
    )
    parts = []
    for key, name, heading, what, color in (
        ("invalid", "invalid-domains", "Domains with the most Invalids", "Invalid", "#c62828"),
        ("catch_all", "catch-all-domains", "Catch-all domains", "Catch-All", "#ef8f00"),
    ):
        entries = rows(found.get(key))
        head = f'<section id="{name}"><h2>{heading}</h2>'
        if not entries:
            parts.append(head + f'<p class="none">No {what} verdicts by domain.</p></section>')
            continue
        listing = _table(
            ["domain", f"{what} records"],
            [[_e(e.get("domain")), _n(e.get("count"))] for e in entries],
            {1},
        )
        parts.append(
            head + f'<p class="lead">The addresses\' domains by {what} verdicts, largest first '
            f"(at most {len(entries)} shown).</p>"
            + note
            + page.chart(name, charts.domains(entries, color, f"{what} records"))
            + f"<details><summary>As a table</summary>{listing}</details></section>"
        )
    return "".join(parts)


def _throughput(page: _Page, report: Mapping[str, Any]) -> str:
    samples = rows(mapping(report.get("throughput")).get("samples"))
    elapsed = number(report.get("elapsed_seconds"))
    lead = (
        f"{_n(report.get('records'))} records in {elapsed:,.1f} s: "
        f"{number(report.get('records_per_second')):,.1f} records/s, "
        f"{number(report.get('verifications_per_second')):,.2f} verifications/s."
    )
    figure = charts.throughput(samples)
    shown = (
        page.chart("throughput", figure)
        if figure is not None
        else '<p class="none">Too short a run to draw.</p>'
    )
    return (
        f'<section id="throughput"><h2>Throughput</h2><p class="lead">{lead}</p>{shown}</section>'
    )


def _target(page: _Page, target: Mapping[str, Any] | None) -> str:
    head = '<section id="target"><h2>Written to Customer.io</h2>'
    if target is None:
        return (
            head + '<p class="none">The target\'s report was not given. The mapper cannot know '
            "what the target wrote: set the target's <code>report_path</code> and draw this page "
            "with <code>emailverify-report --mapper-report MAPPER.json --target-report "
            "TARGET.json --html OUT.html</code>.</p></section>"
        )
    figures = counts(target.get("counts"))
    dry = target.get("dry_run") is True
    landing = mapping(target.get("landing"))
    words = (
        f"Dry run: would send {_n(figures.get('would_send'))} identifies"
        if dry
        else f"Written {_n(figures.get('written'))}"
    )
    lead = (
        f"{words}; skipped unchanged {_n(figures.get('skipped_unchanged'))}, nothing to send "
        f"{_n(figures.get('skipped_empty'))}, dead-lettered {_n(figures.get('dead_lettered'))}; "
        f"{_n(figures.get('requests'))} requests, {_n(figures.get('retries'))} retries."
    )
    landing_line = text(landing.get("summary"))
    reasons = rows(target.get("dead_letter_reasons"))
    dead = ""
    if reasons:
        dead = "<h3>Dead-lettered, by the API's reason</h3>" + _table(
            ["records", "reason"],
            [[_n(r.get("count")), _e(r.get("reason"))] for r in reasons],
            {0},
        )
    path = text(target.get("dead_letter_path"))
    if count(figures.get("dead_lettered")) and path:
        dead += (
            f'<p class="lead">Each rejected record, with its reason: <code>{_e(path)}</code>.</p>'
        )
    interrupted = (
        '<p class="warn">The target did not finish its run.</p>'
        if target.get("completed") is False
        else ""
    )
    return (
        head
        + f'<p class="lead">{lead}</p>'
        + (f'<p class="lead">Landing check: {_e(landing_line)}.</p>' if landing_line else "")
        + interrupted
        + page.chart("target", charts.target(figures))
        + dead
        + "</section>"
    )
