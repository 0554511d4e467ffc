"""README.md's "Add to an existing Meltano project", as a user follows it: a fresh `meltano init`,
the three plugins added from their hub/ definitions with `meltano add --from-ref`, the mapping added
to meltano.yml, each setting `cio-sandbox serve --write-config` writes set with
`meltano config set`, and the job run.

The commands are read from the README itself, so the README cannot say something the test does not
do. The one line not run is `export CUSTOMERIO_EV_CHECKOUT=...`, which names the user's own path:
the test sets the variable to this checkout. The settings' block runs as written, with the
sandbox's keys in `$APP_API_KEY` and `$PIPELINES_API_KEY` (its setting names are also checked
against the definitions); the sandbox's settings then point the plugins at the sandbox. The ~25
`meltano config set` commands run in one interpreter through Meltano's own CLI entry point (same
arguments, one import of Meltano instead of twenty-five: each costs seconds).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cio_sandbox import Sandbox, World
from cio_sandbox.cli import write_configs
from cio_sandbox.report import evaluate

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SECTION = "## Add to an existing Meltano project"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.S | re.M)


def readme_blocks() -> list[tuple[str, str]]:
    """The section's fenced blocks, as (language, text)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert SECTION in readme
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(section)]


def commands(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def blocks_with(word: str) -> list[str]:
    found = [cmd for lang, text in readme_blocks() if lang == "sh" for cmd in commands(text)]
    return [cmd for cmd in found if word in cmd]


def shell(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


#: Runs `meltano ...` lines from stdin through Meltano's CLI in this one process.
BATCH = """
import shlex, sys
from meltano.cli import cli
for line in sys.stdin.read().splitlines():
    argv = shlex.split(line, comments=True)
    assert argv[0] == "meltano", line
    try:
        cli.main(argv[1:], prog_name="meltano", standalone_mode=False)
    except SystemExit as exc:
        if exc.code:
            sys.exit(f"{line}: exit {exc.code}")
"""


def run_batch(lines: list[str], cwd: Path, env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", BATCH],
        input="\n".join(lines),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])


def run_all(lines: list[str], cwd: Path, env: dict[str, str]) -> None:
    for line in lines:
        done = shell(line, cwd, env)
        assert done.returncode == 0, (line, done.stdout[-2000:], done.stderr[-3000:])


def with_variables(line: str, values: dict[str, str]) -> str:
    """`line` with each `$NAME` of `values` replaced, as the shell would (the values are plain
    keys: no quoting needed)."""
    return re.sub(r"\$(\w+)", lambda m: values[m.group(1)], line)


def config_set(plugin: str, setting: str, value: Any) -> str:
    shown = value if isinstance(value, str) else json.dumps(value)
    return f"meltano config set {plugin} {setting} {shlex.quote(shown)}"


def test_the_readme_blocks_are_the_steps_this_test_runs() -> None:
    """Guards the parsing below: every block is one the test runs or checks."""
    languages = [lang for lang, _ in readme_blocks()]
    assert languages == ["sh", "yaml", "sh", "sh"], languages
    adds = blocks_with("meltano add ")
    assert len(adds) == 3 and all("--from-ref $CUSTOMERIO_EV_CHECKOUT/hub/" in a for a in adds)
    assert blocks_with("meltano run ") == [
        "meltano run tap-customerio-people emailverify target-customerio-ev"
    ]


def test_the_production_settings_are_settings_of_the_definitions() -> None:
    definitions: dict[str, Any] = {
        path.parent.name: yaml.safe_load(path.read_text())
        for path in (ROOT / "hub").glob("*/*/emailverify.yml")
    }
    _, _, production, _ = readme_blocks()
    lines = commands(production[1])
    assert lines
    for line in lines:
        words = shlex.split(line, comments=True)
        assert words[:3] == ["meltano", "config", "set"], line
        plugin, setting = words[3], words[4]
        assert setting in {s["name"] for s in definitions[plugin]["settings"]}, line


def test_a_fresh_project_adds_configures_and_runs_the_three_plugins(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "CUSTOMERIO_EV_CHECKOUT": str(ROOT),
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    for name in [k for k in env if k.startswith(("MELTANO_", "TAP_", "TARGET_", "MAPPER_"))]:
        if name != "MELTANO_SEND_ANONYMOUS_USAGE_STATS":
            env.pop(name)
    init = shell("meltano init project --no-usage-stats", tmp_path, env)
    assert init.returncode == 0, init.stderr[-3000:]
    project = tmp_path / "project"

    [add_block, mapping_block, settings_block, run_block] = readme_blocks()
    run_all([c for c in commands(add_block[1]) if not c.startswith("export ")], project, env)

    meltano_yml = project / "meltano.yml"
    data = yaml.safe_load(meltano_yml.read_text())
    [mapper] = data["plugins"]["mappers"]
    mapper.update(yaml.safe_load(mapping_block[1]))
    meltano_yml.write_text(yaml.safe_dump(data, sort_keys=False))

    with Sandbox(World(seed=25, people=150)) as sb:
        sb.obs.faults.app_rate_limit = 0
        keys = {"APP_API_KEY": sb.keys.app_api_key, "PIPELINES_API_KEY": sb.keys.pipelines_api_key}
        # The README's settings block as written, then what `cio-sandbox serve --write-config
        # sandbox-config` writes, set "strings as they are and other values as JSON".
        run_batch(
            [with_variables(line, keys) for line in commands(settings_block[1])]
            + [
                config_set(plugin, name, value)
                for plugin, path in write_configs(sb, project / "sandbox-config").items()
                for name, value in json.loads(path.read_text()).items()
            ],
            project,
            env,
        )
        [job] = commands(run_block[1])
        result = shell(job, project, env)
        assert result.returncode == 0, result.stderr[-5000:]
        landed = sb.obs.landed_copy()
        report = evaluate(sb.world, landed, sb.obs.writes)
    assert report.coverage == 1.0, report.missing[:10]
    assert report.false_invalid == 0, report.wrong[:10]
    assert report.timestamps_unix
    assert "sampled People show the new values" in result.stderr
    # The definitions' pip_url installed the plugins from this checkout, in the project's own venvs.
    assert (project / ".meltano" / "mappers" / "mapper-emailverify" / "venv").is_dir()
