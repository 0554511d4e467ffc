"""`cio-sandbox serve` starts fast, prints a pipeline's settings and stops cleanly on Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

CLI = str(Path(sys.executable).parent / "cio-sandbox")


def test_serve_starts_fast_prints_settings_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = subprocess.Popen(
        [CLI, "serve", "--format", "json", "--people", "500", "--write-config", str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        ready_after = time.monotonic() - started
        payload = json.loads(line)
        assert ready_after < 5, f"serve took {ready_after:.1f} s to be ready"
        settings = payload["settings"]
        tap = settings["tap-customerio-people"]
        assert tap["api_url"].startswith("http://127.0.0.1:")
        mapper = settings["mapper-emailverify"]
        assert mapper["dns_nameservers"][0].startswith("127.0.0.1:") and mapper["smtp_port"] > 0
        assert settings["target-customerio-ev"]["api_url"].startswith("http://127.0.0.1:")
        assert json.loads((tmp_path / "tap-customerio-people.json").read_text()) == tap
        answer = requests.get(
            f"{tap['api_url']}/v1/workspaces",
            headers={"Authorization": f"Bearer {tap['app_api_key']}"},
            timeout=5,
        )
        assert answer.status_code == 200
        assert answer.json()["workspaces"][0]["people"] == 500
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0


def test_serve_refuses_a_non_loopback_address() -> None:
    result = subprocess.run(
        [CLI, "serve", "--host", "0.0.0.0"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "loopback" in result.stderr


def test_world_command_describes_the_ground_truth() -> None:
    result = subprocess.run(
        [CLI, "world", "--people", "1000"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    assert "1000 People" in result.stdout and "Valid" in result.stdout
