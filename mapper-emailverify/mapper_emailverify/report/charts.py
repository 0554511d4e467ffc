"""The report's figures, drawn with plotly from the JSON report; each builder returns None when
there is nothing to draw.

Every string from the data (domains, providers, causes) is HTML-escaped before it becomes a label:
plotly.js reads a subset of HTML in labels (`<b>`, `<br>`, `<a href>`), and a domain is whatever a
sign-up typed. The figure's JSON is escaped for the page's script tag by plotly itself.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from mapper_emailverify.report.data import count, mapping, number, text
from mapper_emailverify.taxonomy import Status

STATUS_COLORS = {
    str(Status.VALID): "#2e7d32",
    str(Status.INVALID): "#c62828",
    str(Status.CATCH_ALL): "#ef8f00",
    str(Status.DISPOSABLE): "#6a1b9a",
    str(Status.UNKNOWN): "#78909c",
}
OTHER_COLOR = "#90a4ae"
#: Labels longer than this are cut (a domain of 253 characters would squeeze the bars away).
MAX_LABEL = 48
#: plotly.js options: a report, not a workbench (no toolbar; hover and zoom still work), redrawn
#: with the window.
CONFIG = {"displayModeBar": False, "responsive": True}
_LAYOUT: dict[str, Any] = {
    "template": "plotly_white",
    "margin": {"l": 10, "r": 10, "t": 10, "b": 10},
    "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 13},
}


def label(value: Any) -> str:
    """A data string fit for a plotly label: cut, then escaped (plotly.js shows entities as
    their characters, so `<script>` reads as typed and never becomes markup)."""
    shown = text(value)
    if len(shown) > MAX_LABEL:
        shown = shown[: MAX_LABEL - 1] + "…"
    return html.escape(shown, quote=False)


def to_div(name: str, figure: go.Figure) -> str:
    """The figure as a `<div>` and its script, without plotly.js (the page inlines it once)."""
    return str(
        pio.to_html(
            figure,
            include_plotlyjs=False,
            full_html=False,
            div_id=f"chart-{name}",
            config=CONFIG,
            default_width="100%",
        )
    )


def _figure(height: int, **layout: Any) -> go.Figure:
    figure = go.Figure()
    figure.update_layout(**_LAYOUT, height=height, **layout)
    return figure


def statuses(by_status: Mapping[str, Any]) -> go.Figure | None:
    """Records by EV_Status, one bar each in the taxonomy's order."""
    names = [str(status) for status in Status]
    values = [count(by_status.get(name)) for name in names]
    if not any(values):
        return None
    figure = _figure(300, showlegend=False, yaxis={"title": "records"})
    figure.add_bar(
        x=names,
        y=values,
        marker_color=[STATUS_COLORS[name] for name in names],
        text=values,
        textposition="outside",
        cliponaxis=False,
        hovertemplate="%{x}: %{y} records<extra></extra>",
    )
    return figure


def substatuses(by_substatus: Mapping[str, Any]) -> go.Figure | None:
    """Records by status, then sub-status: a sunburst whose inner ring is the status."""
    ids: list[str] = []
    labels: list[str] = []
    parents: list[str] = []
    values: list[int] = []
    colors: list[str] = []
    for status, subs in by_substatus.items():
        pairs = [(label(sub), count(n)) for sub, n in mapping(subs).items() if count(n) > 0]
        if not pairs:
            continue
        color = STATUS_COLORS.get(str(status), OTHER_COLOR)
        status_id = f"s{len(ids)}"
        ids.append(status_id)
        labels.append(label(status))
        parents.append("")
        values.append(sum(n for _, n in pairs))
        colors.append(color)
        for i, (sub, n) in enumerate(pairs):
            ids.append(f"{status_id}-{i}")
            labels.append(sub)
            parents.append(status_id)
            values.append(n)
            colors.append(color)
    if not ids:
        return None
    figure = _figure(420)
    figure.add_sunburst(
        ids=ids,
        labels=labels,
        parents=parents,
        values=values,
        branchvalues="total",
        marker={"colors": colors, "line": {"color": "white", "width": 1}},
        insidetextorientation="radial",
        hovertemplate="%{label}: %{value} records (%{percentRoot:.1%})<extra></extra>",
    )
    return figure


def unknowns(groups: Sequence[Mapping[str, Any]]) -> go.Figure | None:
    """Unknowns by mail provider, one stacked bar segment per cause."""
    groups = [group for group in groups if count(group.get("count")) > 0]
    if not groups:
        return None
    providers: list[str] = []
    by_cause: dict[str, dict[str, int]] = {}
    for group in groups:
        provider, cause = label(group.get("provider")), label(group.get("cause"))
        if provider not in providers:
            providers.append(provider)
        cells = by_cause.setdefault(cause, {})
        cells[provider] = cells.get(provider, 0) + count(group.get("count"))
    providers.reverse()  # the largest group's provider on top
    figure = _figure(
        140 + 28 * len(providers),
        barmode="stack",
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        xaxis={"title": "Unknown verdicts"},
        yaxis={"automargin": True},
    )
    for cause, cells in by_cause.items():
        figure.add_bar(
            y=providers,
            x=[cells.get(provider, 0) for provider in providers],
            name=cause,
            orientation="h",
            hovertemplate=f"%{{y}}, {cause}: %{{x}}<extra></extra>",
        )
    return figure


def domains(entries: Sequence[Mapping[str, Any]], color: str, what: str) -> go.Figure | None:
    """Domains by count, largest on top."""
    pairs = [(label(e.get("domain")), count(e.get("count"))) for e in entries]
    pairs = [(domain, n) for domain, n in pairs if n > 0][::-1]
    if not pairs:
        return None
    figure = _figure(
        80 + 26 * len(pairs), showlegend=False, xaxis={"title": what}, yaxis={"automargin": True}
    )
    figure.add_bar(
        y=[f"{domain} " for domain, _ in pairs],  # a blank: no number-looking name as an axis value
        x=[n for _, n in pairs],
        orientation="h",
        marker_color=color,
        text=[n for _, n in pairs],
        textposition="outside",
        cliponaxis=False,
        hovertemplate=f"%{{y}}: %{{x}} {what}<extra></extra>",
    )
    return figure


def throughput(samples: Sequence[Mapping[str, Any]]) -> go.Figure | None:
    """Records done and verifications over the run's seconds."""
    points = [
        (number(s.get("seconds")), count(s.get("records")), count(s.get("verified")))
        for s in samples
    ]
    if len(points) < 2 or not any(records for _, records, _ in points):
        return None
    figure = _figure(
        320,
        xaxis={"title": "seconds since the mapper started"},
        yaxis={"title": "done"},
        legend={"orientation": "h", "y": 1.1},
        hovermode="x unified",
    )
    seconds = [point[0] for point in points]
    figure.add_scatter(
        x=seconds, y=[p[1] for p in points], name="records done", mode="lines", line_width=3
    )
    figure.add_scatter(
        x=seconds, y=[p[2] for p in points], name="verified now (engine)", mode="lines"
    )
    return figure


def target(counts: Mapping[str, int]) -> go.Figure | None:
    """What the target did with the records: written, skipped, dead-lettered."""
    shown = [
        ("written", "written", STATUS_COLORS[str(Status.VALID)]),
        ("would_send", "would send (dry run)", "#1565c0"),
        ("skipped_unchanged", "skipped, unchanged", OTHER_COLOR),
        ("skipped_empty", "nothing to send", "#b0bec5"),
        ("dead_lettered", "dead-lettered", STATUS_COLORS[str(Status.INVALID)]),
    ]
    bars = [(name, words, color) for name, words, color in shown if counts.get(name)]
    if not bars:
        return None
    figure = _figure(100 + 34 * len(bars), showlegend=False, yaxis={"automargin": True})
    figure.add_bar(
        y=[words for _, words, _ in bars][::-1],
        x=[counts[name] for name, _, _ in bars][::-1],
        orientation="h",
        marker_color=[color for _, _, color in bars][::-1],
        text=[counts[name] for name, _, _ in bars][::-1],
        textposition="outside",
        cliponaxis=False,
        hovertemplate="%{y}: %{x}<extra></extra>",
    )
    return figure
