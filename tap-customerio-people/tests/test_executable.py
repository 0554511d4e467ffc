"""The installed executable, as Meltano runs it: --about, --discover, a sync, a bad config."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from cio_sandbox import Sandbox

from .conftest import parse_singer

EXECUTABLE = Path(sys.executable).parent / "tap-customerio-people"
SETTINGS = {
    "app_api_key",
    "region",
    "workspace_url",
    "api_url",
    "segment_ids",
    "requests_per_second",
}
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(EXECUTABLE), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_about_json_lists_the_settings_and_marks_the_key_secret() -> None:
    about = json.loads(run("--about", "--format=json").stdout)
    properties = about["settings"]["properties"]
    assert set(properties) >= SETTINGS
    assert properties["app_api_key"]["secret"] is True
    assert about["settings"]["required"] == ["app_api_key"]
    assert (
        properties["region"]["default"] == "us"
        and properties["requests_per_second"]["default"] == 10
    )


def test_discover_lists_the_three_streams_with_their_keys() -> None:
    catalog = json.loads(run("--discover").stdout)
    keys = {s["tap_stream_id"]: s["key_properties"] for s in catalog["streams"]}
    assert keys == {"people": ["cio_id"], "segments": ["id"], "suppressions": ["type", "email"]}


def test_sync_through_the_executable(make_sandbox, tmp_path: Path) -> None:
    sb: Sandbox = make_sandbox(seed=31, people=1500)
    sb.obs.faults.app_rate_limit = 0
    config = tmp_path / "config.json"
    config.write_text(json.dumps(sb.tap_config(requests_per_second=100)))
    done = run("--config", str(config))
    assert done.returncode == 0, done.stderr[-2000:]
    messages, records = parse_singer(done.stdout)
    schemas = {m["stream"] for m in messages if m["type"] == "SCHEMA"}
    assert schemas == {"people", "segments", "suppressions"}
    assert sorted(r["cio_id"] for r in records["people"]) == sorted(
        p.cio_id for p in sb.world.iter_people()
    )
    assert len(records["segments"]) == len(sb.world.segments)
    assert sb.keys.app_api_key not in done.stderr
    assert EMAIL.search(done.stderr) is None
    assert "people: 1500 records" in done.stderr


def test_bad_config_exits_1_with_one_line_per_problem(make_sandbox, tmp_path: Path) -> None:
    sb: Sandbox = make_sandbox(seed=31, people=50)
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            sb.tap_config(
                region="us",
                workspace_url="https://eu.fly.customer.io/workspaces/1",
                api_url="http://10.1.2.3",
            )
        )
    )
    done = run("--config", str(config))
    assert done.returncode == 1
    assert "set region to 'eu' or fix workspace_url" in done.stderr
    assert "api_url must use https:// for 10.1.2.3" in done.stderr
    assert sb.keys.app_api_key not in done.stderr
    assert sb.obs.requests_to("app") == 0


def test_a_key_with_a_line_break_exits_1_naming_the_setting_not_the_key(
    make_sandbox, tmp_path: Path
) -> None:
    sb: Sandbox = make_sandbox(seed=31, people=50)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(sb.tap_config(app_api_key=f"{sb.keys.app_api_key}\r\n")))
    done = run("--config", str(config))
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
    [problem] = [line for line in errors if not line.endswith("Config validation failed")]
    assert "app_api_key contains a space, line break" in problem
    assert sb.keys.app_api_key not in done.stderr and "Traceback" not in done.stderr
    assert sb.obs.requests_to("app") == 0


def test_401_is_one_line_in_the_log(make_sandbox, tmp_path: Path) -> None:
    sb: Sandbox = make_sandbox(seed=31, people=50)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(sb.tap_config(api_url=sb.app_api_url_other)))
    done = run("--config", str(config))
    assert done.returncode == 1
    [line] = [line for line in done.stderr.splitlines() if "ERROR" in line and "401" in line]
    assert "check that app_api_key is an App API key" in line and "region 'us'" in line
    assert "Traceback" not in done.stderr
    assert sb.keys.app_api_key not in done.stderr


def test_suppressions_are_emitted_before_people(sandbox: Sandbox, tmp_path: Path) -> None:
    """The mapper's hard-bounce check needs the bounce history before it verifies People."""
    sandbox.obs.faults.app_rate_limit = 0
    try:
        cfg = tmp_path / "config.json"
        cfg.write_text(json.dumps(sandbox.tap_config(requests_per_second=500)))
        exe = Path(sys.executable).parent / "tap-customerio-people"
        out = subprocess.run(
            [str(exe), "--config", str(cfg)], capture_output=True, text=True, check=True
        ).stdout
    finally:
        sandbox.obs.reset_faults()
    streams = [m["stream"] for m in map(json.loads, out.splitlines()) if m["type"] == "RECORD"]
    assert streams.index("people") > max(i for i, s in enumerate(streams) if s == "suppressions")
