"""The README's settings tables and meltano.yml's setting lists cannot drift from the plugins'
`--about`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_and_meltano_yml_match_the_plugins() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "plugin_settings.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme.split("---")[0], (
        "the README's first screen must give the test command"
    )
    assert "make test" in (ROOT / ".ci" / "run").read_text()
