"""The run report as a page people would rather look at than read: `page.render_html` turns the
mapper's JSON report (`report_path`), and optionally the target's, into one self-contained HTML
file (plotly.js inline, so it opens without a network); `charts` draws its figures; `cli` is
`emailverify-report`.

It reads only the JSON report (plain data), never the engine or the Singer side, so it renders a
report written by another machine or an older run.
"""
