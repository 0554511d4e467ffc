"""The mapper reads the total a tap announces in its SCHEMA (`expected_record_count`) and shows
done of total; a tap that announces none gets done and rate, and the run works the same."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
MAPPER = str(BIN / "mapper-emailverify")
SCHEMA = {
    "type": "SCHEMA",
    "stream": "contacts",
    "schema": {"type": "object", "properties": {"id": {"type": "integer"}, "email": {}}},
    "key_properties": ["id"],
}


def run(tmp_path: Path, schema: dict) -> tuple[list[dict], list[str]]:
    # Addresses that fail the syntax check: no DNS query and no SMTP connection is made.
    records = [
        {"type": "RECORD", "stream": "contacts", "record": {"id": i, "email": f"bad-{i}"}}
        for i in range(3)
    ]
    config = tmp_path / "mapper.json"
    config.write_text(json.dumps({"dns_nameservers": ["127.0.0.1:9"], "smtp_check": False}))
    lines = [schema, *records, {"type": "STATE", "value": {"bookmarks": {}}}]
    proc = subprocess.run(
        [MAPPER, "--config", str(config)],
        input="".join(json.dumps(line) + "\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    progress = [line for line in proc.stderr.splitlines() if "Progress: " in line]
    return out, progress


def test_a_total_in_the_schema_gives_done_of_total(tmp_path: Path) -> None:
    out, progress = run(tmp_path, {**SCHEMA, "expected_record_count": 3})
    assert progress, "the last progress line is always logged"
    assert "Progress: 3 of 3 records (100%)" in progress[-1]
    # Passed on untouched: the key is ignorable by any Singer target.
    assert out[0]["expected_record_count"] == 3


def test_without_a_total_done_and_rate_only(tmp_path: Path) -> None:
    out, progress = run(tmp_path, SCHEMA)
    assert [m["type"] for m in out] == ["SCHEMA", "RECORD", "RECORD", "RECORD", "STATE"]
    assert "Progress: 3 records, " in progress[-1]
    assert " of " not in progress[-1] and "left" not in progress[-1]


def test_a_malformed_total_is_ignored(tmp_path: Path) -> None:
    for bad in ("3", -1, True, 2.5, None):
        _, progress = run(tmp_path, {**SCHEMA, "expected_record_count": bad})
        assert "Progress: 3 records, " in progress[-1], bad
