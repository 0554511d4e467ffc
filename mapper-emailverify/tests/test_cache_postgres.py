"""`cache_url`: the verdict cache in a real PostgreSQL server, shared by several workers.

Issue 21, item 1 (first part). The same assertions run over `SqliteResultsCache` and
`PostgresResultsCache` (keys, TTLs, transient verdicts, bounces are the same); then the real
executable: two mappers writing the same addresses at once, a third run answered from the database
without SMTP, and a database stopped mid-run (one WARNING, the run completes). A database that
cannot be used at start (refused, unknown host, wrong password, no such database, no answer) stops
the run before any record, in one line. The URL's password never reaches stderr.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from mapper_emailverify.engine.errors import ConfigError
from mapper_emailverify.stream_map.settings import MapperSettings
from mapper_emailverify.stream_map.verdict_cache import (
    SqliteResultsCache,
    Verdict,
    address_key,
)
from mapper_emailverify.stream_map.verdict_cache_pg import PostgresResultsCache, redacted

sys.path.insert(0, str(Path(__file__).parent))
from cache_helpers import (  # beside the tests
    MAPPER,
    cache_warnings,
    config_file,
    empty_database,
    password_of,
    stop_server_mid_run,
)

HOUR = 3600.0
DAY = 86400.0
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


def rows(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as db:
        return db.execute("SELECT key, status, substatus FROM results").fetchall()


@pytest.fixture(params=["sqlite", "postgres"])
def open_backend(request: Any, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """`open_backend(ttl_days, transient_hours)`: a fresh cache of the backend; reopening it (the
    next call) sees what the previous one committed."""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        empty_database(url)
        yield lambda *args: PostgresResultsCache(url, *args)
    else:
        yield lambda *args: SqliteResultsCache(tmp_path / "cache.sqlite", *args)


def test_round_trip_ttl_transient_and_bounces_alike(open_backend: Callable[..., Any]) -> None:
    now = time.time()
    fresh, old, transient, stale_transient, bounced, bounced_hb = (
        address_key(f"user{i}@example.com") for i in range(6)
    )
    cache = open_backend(30, 20)
    cache.put(fresh, Verdict("Valid", "mailbox_exists", now - 29 * DAY))
    cache.put(old, Verdict("Valid", "mailbox_exists", now - 31 * DAY))
    cache.put(transient, Verdict("Unknown", "greylisted", now - 19 * HOUR))
    cache.put(stale_transient, Verdict("Unknown", "smtp_timeout", now - 21 * HOUR))
    cache.put(bounced, Verdict("Valid", "mailbox_exists", now))
    assert not cache.has_bounces()
    cache.add_bounce(bounced)
    cache.add_bounce(bounced_hb)
    cache.put(bounced_hb, Verdict("Invalid", "hard_bounce_history", now))
    cache.put(bounced, Verdict("Valid", "mailbox_exists", now))  # a bounce outweighs it

    def check(c: Any) -> None:
        assert c.get(fresh) == Verdict("Valid", "mailbox_exists", pytest.approx(now - 29 * DAY))
        assert c.get(old) is None
        assert c.get(transient) is not None and c.get(stale_transient) is None
        assert c.get(bounced) is None
        assert c.get(bounced_hb).substatus == "hard_bounce_history"
        assert c.is_bounce(bounced) and c.is_bounce(bounced_hb) and not c.is_bounce(fresh)
        assert c.has_bounces()

    check(cache)  # before any commit: this run's writes answer its reads
    cache.close()
    again = open_backend(30, 20)
    check(again)
    keys = [fresh, old, transient, stale_transient, bounced, bounced_hb]
    again.prefetch(keys, bounces=keys)
    check(again)
    again.close()


def test_the_newer_verdict_wins_whoever_writes_last(postgres_url: str) -> None:
    empty_database(postgres_url)
    key, now = address_key("jane@example.com"), time.time()
    first, second = PostgresResultsCache(postgres_url, 30), PostgresResultsCache(postgres_url, 30)
    first.put(key, Verdict("Valid", "mailbox_exists", now))
    first.commit()
    second.put(key, Verdict("Unknown", "greylisted", now - 60))  # reached earlier, sent later
    second.commit()
    assert rows(postgres_url) == [(key, "Valid", "mailbox_exists")]
    first.close()
    second.close()


def test_settings_pick_one_cache_and_hide_the_url() -> None:
    with pytest.raises(ConfigError, match="pick one"):
        MapperSettings.from_config({"cache_path": "x.sqlite", "cache_url": "postgresql://h/db"})
    with pytest.raises(ConfigError, match="PostgreSQL URL"):
        MapperSettings.from_config({"cache_url": "mysql://u:pw@h/db"})
    settings = MapperSettings.from_config({"cache_url": "postgresql://u:pw123@h/db"})
    assert "pw123" not in repr(settings)
    assert redacted("postgresql://u:pw123@h:5/db") == "postgresql://u:***@h:5/db"


# -- the real executable ---------------------------------------------------------------------------


def singer_input(addresses: list[str]) -> str:
    lines: list[Any] = [SCHEMA]
    lines += [
        {"type": "RECORD", "stream": "people", "record": {"cio_id": str(i), "email": email}}
        for i, email in enumerate(addresses)
    ]
    lines.append(STATE)
    return "".join(json.dumps(line) + "\n" for line in lines)


def records_of(stdout: str) -> list[dict[str, Any]]:
    out = [json.loads(raw) for raw in stdout.splitlines()]
    return [m["record"] for m in out if m["type"] == "RECORD"]


def test_two_workers_share_one_database_and_a_third_run_needs_no_smtp(
    sandbox: Any, postgres_url: str, tmp_path: Path
) -> None:
    empty_database(postgres_url)
    addresses = [
        p.email
        for p in sandbox.world.iter_people()
        if p.email and p.truth.case == "normal" and p.email == p.email.strip()
    ][:60]
    assert len(addresses) == 60
    text = singer_input(addresses)
    config = config_file(sandbox, tmp_path, postgres_url)
    workers = [
        subprocess.Popen(
            [MAPPER, "--config", str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [worker.communicate(text, timeout=60) for worker in workers]
    secret = password_of(postgres_url)
    for worker, (stdout, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr[-3000:]
        assert "Traceback" not in stderr and cache_warnings(stderr) == [], stderr[-3000:]
        assert secret not in stderr
        assert len(records_of(stdout)) == 60
    stored = rows(postgres_url)
    assert len(stored) == len({key for key, _, _ in stored}) == len(set(addresses))
    assert not any(address.lower() in repr(stored) for address in addresses)

    sandbox.obs.reset_counters()
    done = subprocess.run(
        [MAPPER, "--config", str(config)], input=text, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert sandbox.obs.snapshot()["smtp_connections"] == 0
    assert sandbox.obs.snapshot()["rcpt"] == 0
    assert len(records_of(done.stdout)) == 60
    assert secret not in done.stderr


def test_a_database_lost_mid_run_costs_one_warning_and_no_record(
    sandbox: Any, make_postgres: Callable[[], Any], tmp_path: Path
) -> None:
    server = make_postgres()
    config = config_file(sandbox, tmp_path, server.url, smtp_check=False)
    count = 400
    lines = singer_input([f"user{i}@gone-{i % 7}.example" for i in range(count)]).splitlines(True)

    def reached() -> bool:  # the first half's verdicts are in the database
        return len(rows(server.url)) > 0

    stdout, stderr = stop_server_mid_run(config, lines, 1 + count // 2, server, reached)
    [warning] = cache_warnings(stderr)
    assert "cache_url" in warning and "***" in warning, warning
    records = records_of(stdout)
    assert sorted(int(r["cio_id"]) for r in records) == list(range(count))
    assert {r["EV_Status"] for r in records} == {"Invalid"}


# -- a database that cannot be used at start -------------------------------------------------------


def unusable(url: str, problem: str) -> str:
    """`url` (the session's server) made unusable in one way, the password kept in it."""
    parts = urlsplit(url)
    login = f"{parts.username}:{parts.password}"
    if problem == "refused":
        with socket.socket() as probe:  # a port nobody listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        return urlunsplit(parts._replace(netloc=f"{login}@127.0.0.1:{port}"))
    if problem == "unknown host":
        return urlunsplit(parts._replace(netloc=f"{login}@no-such-host.invalid:5432"))
    if problem == "password":
        return url.replace(f":{parts.password}@", ":Wr0ng-Pa55word@")
    assert problem == "database"
    return urlunsplit(parts._replace(path="/no_such_database"))


@pytest.mark.parametrize("problem", ["refused", "unknown host", "password", "database"])
def test_a_database_unusable_at_start_stops_the_run_in_one_line(
    sandbox: Any, postgres_url: str, tmp_path: Path, problem: str
) -> None:
    url = unusable(postgres_url, problem)
    config = config_file(sandbox, tmp_path, url, smtp_check=False)
    done = subprocess.run(
        [MAPPER, "--config", str(config)],
        input=singer_input([f"user{i}@example.com" for i in range(5)]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0, done.stderr[-3000:]
    assert done.stdout == ""  # not a record, not the SCHEMA
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    [line] = [row for row in done.stderr.splitlines() if "cache_url" in row]
    assert "ERROR" in line and "***" in line and "remove cache_url" in line, line
    assert password_of(url) not in done.stderr


def test_a_server_that_never_answers_stops_the_start_after_the_connect_timeout() -> None:
    with socket.socket() as silent:  # accepts the connection, says nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"postgresql://ev:Sil3nt-Pa55@127.0.0.1:{silent.getsockname()[1]}/ev"
        began = time.monotonic()
        with pytest.raises(ConfigError) as raised:
            PostgresResultsCache(url, 30, connect_timeout=2)
    assert time.monotonic() - began < 10
    message = str(raised.value)
    assert "cache_url" in message and "***" in message and "Sil3nt" not in message
    assert "\n" not in message
