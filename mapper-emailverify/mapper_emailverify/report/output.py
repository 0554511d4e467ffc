"""Writing a report file so that a reader (a dashboard, a browser reloading it) never sees half
of one: through a temporary file beside it, then renamed."""

from __future__ import annotations

from pathlib import Path


def write_atomically(path: Path, text: str) -> None:
    target = path.expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
