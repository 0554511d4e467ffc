"""The verdict cache is optional: a damaged file, a full disk or a busy new file never stops a run.

Issue 16, item 5. Through the real executable against the sandbox's DNS (addresses at domains that
do not exist: one quick, cacheable verdict each), and unit tests of `SqliteResultsCache` for what a
run cannot easily provoke. A corrupt file is moved aside once (`<cache_path>.corrupt-<time>`) with
one WARNING naming `cache_path`; a disk that refuses writes turns the cache read-only for the rest
of the run with one WARNING; several mappers opening one fresh file at once all start.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from mapper_emailverify.stream_map.verdict_cache import SqliteResultsCache, Verdict, address_key

MAPPER = str(Path(sys.executable).parent / "mapper-emailverify")
SCHEMA = {
    "type": "SCHEMA",
    "stream": "people",
    "key_properties": ["cio_id"],
    "schema": {
        "type": "object",
        "properties": {"cio_id": {"type": "string"}, "email": {"type": ["string", "null"]}},
    },
}
STATE = {"type": "STATE", "value": {"bookmarks": {"people": {"done": True}}}}


def singer_input(count: int) -> str:
    """SCHEMA, `count` records at domains that do not exist (Invalid, domain_not_found), STATE."""
    lines = [SCHEMA]
    lines += [
        {
            "type": "RECORD",
            "stream": "people",
            "record": {"cio_id": str(i), "email": f"user{i}@gone-{i % 5}.example"},
        }
        for i in range(count)
    ]
    lines.append(STATE)
    return "".join(json.dumps(line) + "\n" for line in lines)


def config_file(sandbox: Any, tmp_path: Path, cache: Path) -> Path:
    path = tmp_path / f"mapper-{time.monotonic_ns()}.json"
    config = sandbox.mapper_config(smtp_check=False, dns_timeout=2.0, cache_path=str(cache))
    path.write_text(json.dumps(config))
    return path


def run(config: Path, text: str, **popen: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MAPPER, "--config", str(config)],
        input=text,
        capture_output=True,
        text=True,
        timeout=180,
        **popen,
    )


def assert_all_verified(done: subprocess.CompletedProcess[str], count: int) -> None:
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    out = [json.loads(raw) for raw in done.stdout.splitlines()]
    records = [m["record"] for m in out if m["type"] == "RECORD"]
    assert sorted(int(r["cio_id"]) for r in records) == list(range(count))
    assert {(r["EV_Status"], r["EV_SubStatus"]) for r in records} == {
        ("Invalid", "domain_not_found")
    }
    assert out[-1] == STATE


def cache_warnings(stderr: str) -> list[str]:
    return [row for row in stderr.splitlines() if "WARNING" in row and "cache" in row.lower()]


def corrupt_middle_page(path: Path) -> None:
    """Overwrite one page in the middle of the file (the header stays intact)."""
    db = sqlite3.connect(path)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.close()
    assert pages >= 10, "the cache is too small to have a middle"
    with path.open("r+b") as raw:
        raw.seek((pages // 2) * page_size)
        raw.write(bytes(range(256)) * (page_size // 256))


# -- a corrupt file ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["middle_page", "whole_file"])
def test_a_corrupt_cache_is_moved_aside_and_the_run_verifies_without_it(
    damage: str, sandbox: Any, tmp_path: Path
) -> None:
    cache = tmp_path / "cache.sqlite"
    config = config_file(sandbox, tmp_path, cache)
    text = singer_input(1500)
    assert_all_verified(run(config, text), 1500)  # builds a real cache of 1,500 verdicts
    assert not (tmp_path / "cache.sqlite-wal").exists()
    if damage == "middle_page":
        corrupt_middle_page(cache)
    else:
        cache.write_bytes(b"this is no SQLite file\n" * 4096)

    done = run(config, text)
    assert_all_verified(done, 1500)
    [warning] = cache_warnings(done.stderr)
    [aside] = tmp_path.glob("cache.sqlite.corrupt-*")
    assert "cache_path" in warning and str(cache) in warning and str(aside) in warning, warning
    # A new cache took its place: the next run answers from it without the warning.
    again = run(config, text)
    assert_all_verified(again, 1500)
    assert cache_warnings(again.stderr) == []
    db = sqlite3.connect(cache)
    assert db.execute("PRAGMA quick_check").fetchone() == ("ok",)
    assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 1500


def test_a_corrupt_page_found_mid_run_switches_to_a_new_file(tmp_path: Path, caplog: Any) -> None:
    path = tmp_path / "cache.sqlite"
    cache = SqliteResultsCache(path, ttl_days=30)
    now = time.time()
    keys = [address_key(f"u{i}@example.com") for i in range(3000)]
    for key in keys:
        cache.put(key, Verdict("Valid", "mailbox_exists", now))
    cache.close()
    corrupt_middle_page(path)
    cache = SqliteResultsCache(path, ttl_days=30)  # the header is fine: opening works
    with caplog.at_level(logging.WARNING):
        found = [cache.get(key) for key in keys]  # never raises
        cache.put(keys[0], Verdict("Invalid", "mailbox_not_found", now))
        assert cache.get(keys[0]) == Verdict("Invalid", "mailbox_not_found", now)
        cache.commit()
        cache.close()
    assert found.count(None) > 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "cache_path" in warnings[0] and ".corrupt-" in warnings[0]
    assert len(list(tmp_path.glob("cache.sqlite.corrupt-*"))) == 1
    reopened = SqliteResultsCache(path, ttl_days=30)
    assert reopened.get(keys[0]) == Verdict("Invalid", "mailbox_not_found", now)
    reopened.close()


# -- a full disk ---------------------------------------------------------------------------------


def _small_files() -> None:  # in the child: files may not grow past 64 KiB (a full disk)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


@pytest.mark.slow
def test_a_full_disk_stops_cache_writes_and_the_run_completes(sandbox: Any, tmp_path: Path) -> None:
    cache = tmp_path / "cache.sqlite"
    config = config_file(sandbox, tmp_path, cache)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = run(config, singer_input(3000), preexec_fn=_small_files, env=env)
    assert_all_verified(done, 3000)
    warnings = cache_warnings(done.stderr)
    assert len(warnings) == 1 and "cache_path" in warnings[0], warnings
    assert "Periodic task failed" not in done.stderr


def test_sqlite_full_turns_the_cache_read_only_and_keeps_this_runs_verdicts(
    tmp_path: Path, caplog: Any
) -> None:
    path = tmp_path / "cache.sqlite"
    cache = SqliteResultsCache(path, ttl_days=30)
    now = time.time()
    old = address_key("old@example.com")
    cache.put(old, Verdict("Valid", "mailbox_exists", now))
    cache.commit()
    pages = cache._db.execute("PRAGMA page_count").fetchone()[0]
    cache._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLITE_FULL from here on
    keys = [address_key(f"u{i}@example.com") for i in range(2000)]
    with caplog.at_level(logging.WARNING):
        for key in keys:
            cache.put(key, Verdict("Invalid", "mailbox_not_found", now))
        cache.add_bounce(address_key("bounced@example.com"))
        cache.commit()
        assert cache.get(old) == Verdict("Valid", "mailbox_exists", now)  # still read
        assert all(cache.get(key) is not None for key in keys)  # kept in memory for this run
        assert cache.is_bounce(address_key("bounced@example.com"))
        cache.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "cache_path" in warnings[0] and str(path) in warnings[0]


# -- several mappers on one fresh file -----------------------------------------------------------


def test_a_fresh_file_held_by_another_mapper_mid_setup_still_opens(tmp_path: Path) -> None:
    """Another mapper holds the new file's write lock while it sets the file up: the journal-mode
    switch answers `database is locked` at once (SQLite skips the busy handler there)."""
    path = tmp_path / "fresh.sqlite"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    threading.Timer(0.5, lambda: other.execute("COMMIT")).start()
    cache = SqliteResultsCache(path, ttl_days=30)
    cache.put(address_key("a@example.com"), Verdict("Valid", "mailbox_exists", time.time()))
    cache.close()
    other.close()
    assert SqliteResultsCache(path, ttl_days=30).get(address_key("a@example.com")) is not None


@pytest.mark.slow
def test_four_mappers_start_at_once_on_a_new_cache_file(sandbox: Any, tmp_path: Path) -> None:
    cache = tmp_path / "new" / "cache.sqlite"
    config = config_file(sandbox, tmp_path, cache)
    text = singer_input(200)
    procs = [
        subprocess.Popen(
            [MAPPER, "--config", str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(text, timeout=180)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    for done in results:
        assert_all_verified(done, 200)
