"""`cache_url`: the domain knowledge in a real PostgreSQL server, shared by several workers.

Issue 21, item 1 (second part). `PostgresDomainKnowledge` answers as `SqliteDomainKnowledge` does
for the same writes: the cases of a store's answers (across runs, newer wins, TTL, an MX change
learned again) run over both backends in `test_domain_cache.py`; here, what only a shared server
has. The store answers alike for odd names, names no domain, and takes several workers writing at
once; the newer fact wins whichever worker commits last. The engine asks it from its event loop,
so a database that stops (or freezes) mid-run costs the loop at most about a second, once: one
WARNING without the password, then memory only, and no store dials it again. Then the real
executable: a second run with only `cache_url` spends no catch-all probe on the domains the first
one learned, and a database stopped mid-run costs one WARNING and no record. (A database that
cannot be used at start stops the run in one line: `test_cache_postgres.py`.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from mapper_emailverify.engine.domain_knowledge import DomainKnowledge
from mapper_emailverify.stream_map.cache_choice import open_domain_knowledge
from mapper_emailverify.stream_map.domain_cache import SqliteDomainKnowledge, domain_key
from mapper_emailverify.stream_map.domain_cache_pg import PostgresDomainKnowledge
from mapper_emailverify.stream_map.verdict_cache import Verdict, address_key
from mapper_emailverify.stream_map.verdict_cache_pg import CacheUrl, PostgresResultsCache

sys.path.insert(0, str(Path(__file__).parent))
from cache_helpers import (  # beside the tests
    MAPPER,
    cache_warnings,
    config_file,
    empty_database,
    facts,
    password_of,
    stop_server_mid_run,
    warnings_of,
)

# -- the store -------------------------------------------------------------------------------------


def test_the_store_is_the_engines_domain_knowledge(postgres_url: str) -> None:
    empty_database(postgres_url)
    store: DomainKnowledge = PostgresDomainKnowledge(postgres_url, 7)
    assert store.domain("example.com") is None
    assert store.tls_works("mx.example.com") is None


def test_both_backends_answer_alike_for_the_same_writes(postgres_url: str, tmp_path: Path) -> None:
    empty_database(postgres_url)
    now = time.time()
    names = ["a.example", "Bücher.example", "\ud83d.example", "x" * 300, " B.example. ", ""]
    writes = [
        (name, facts(catch_all=i % 3 == 0 or None, greylisting=i % 2 == 1, learned_at=now - i))
        for i, name in enumerate(names)
    ]
    stores = [
        SqliteDomainKnowledge(tmp_path / "c.sqlite", 7),
        PostgresDomainKnowledge(postgres_url, 7),
    ]
    for store in stores:
        for name, fact in writes:
            store.learn_domain(name, fact)
            store.learn_tls(f"mx.{name}", len(name) % 2 == 0)
        store.close()
    again = [
        SqliteDomainKnowledge(tmp_path / "c.sqlite", 7),
        PostgresDomainKnowledge(postgres_url, 7),
    ]
    asked = [*names, "b.example", "never.example"]
    answers = [[(s.domain(name), s.tls_works(f"mx.{name}")) for name in asked] for s in again]
    assert answers[0] == answers[1]
    assert sum(domain is not None for domain, _ in answers[1]) == len(names) + 1  # b twice


def test_the_newer_fact_wins_whichever_worker_commits_last(postgres_url: str) -> None:
    empty_database(postgres_url)
    now = time.time()
    first, second = (
        PostgresDomainKnowledge(postgres_url, 7),
        PostgresDomainKnowledge(postgres_url, 7),
    )
    first.learn_domain("a.example", facts(catch_all=False, learned_at=now))
    first.close()
    second.learn_domain("a.example", facts(catch_all=True, learned_at=now - 60))  # sent later
    second.learn_domain("b.example", facts(learned_at=now - 60))
    second.close()
    with psycopg.connect(postgres_url) as db:
        rows = dict(db.execute("SELECT key, catch_all FROM ev_domains").fetchall())
    assert rows == {domain_key("a.example"): False, domain_key("b.example"): True}


def test_the_mapper_opens_the_store_of_its_cache_setting(postgres_url: str, tmp_path: Path) -> None:
    empty_database(postgres_url)
    assert open_domain_knowledge(None, 0, url=postgres_url) is None  # ttl 0: no reuse
    assert open_domain_knowledge(None, 7) is None
    alone = open_domain_knowledge(None, 7, url=postgres_url)
    assert isinstance(alone, PostgresDomainKnowledge)
    alone.close()
    lite = open_domain_knowledge(str(tmp_path / "c.sqlite"), 7)
    assert isinstance(lite, SqliteDomainKnowledge)
    lite.close()
    verdicts = PostgresResultsCache(postgres_url, 30)
    beside = open_domain_knowledge(None, 7, url=postgres_url, beside=verdicts)
    assert isinstance(beside, PostgresDomainKnowledge) and beside.link is verdicts.link
    beside.close()
    verdicts.close()


# -- privacy ---------------------------------------------------------------------------------------


def test_the_database_names_no_domain_and_no_host(postgres_url: str) -> None:
    empty_database(postgres_url)
    store = PostgresDomainKnowledge(postgres_url, 7)
    for i in range(50):
        store.learn_domain(f"secretcorp{i}.example", facts())
        store.learn_tls(f"mailhost{i}.secretcorp.example", True)
    store.learn_domain("Bücher-Geheim.example", facts())
    store.close()
    with psycopg.connect(postgres_url) as db:
        dump = repr(db.execute("SELECT * FROM ev_domains").fetchall())
        dump += repr(db.execute("SELECT * FROM ev_mail_hosts").fetchall())
    assert domain_key("secretcorp7.example") in dump
    for needle in ("secretcorp", "mailhost", "Geheim", "geheim", "xn--bcher", "example"):
        assert needle not in dump, needle


# -- a database lost mid-run -----------------------------------------------------------------------


class CountingUrl(CacheUrl):
    """A `CacheUrl` that counts its connections (a store that dials again would add one)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.dials = 0

    def connect(self, tables: Any, **kwargs: Any) -> Any:
        self.dials += 1
        return super().connect(tables, **kwargs)


def assert_one_warning(caplog: Any, url: str) -> None:
    warnings = warnings_of(caplog)
    assert len(warnings) == 1, warnings
    assert "cache_url" in warnings[0] and "***" in warnings[0], warnings[0]
    assert password_of(url) not in "\n".join(r.getMessage() for r in caplog.records)


def test_a_database_stopped_mid_run_costs_one_warning_and_memory_answers(
    make_postgres: Callable[[], Any], caplog: Any
) -> None:
    server = make_postgres()
    link = CountingUrl(server.url)
    verdicts = PostgresResultsCache(link, 30)
    store = PostgresDomainKnowledge(link, 7)
    store.learn_domain("before.example", facts())
    store.learn_tls("mx.before.example", True)
    assert link.dials == 3  # the verdict cache's connection, the store's reader and writer
    server.stop()
    with caplog.at_level(logging.WARNING):
        began = time.monotonic()
        for i in range(50):
            store.learn_domain(f"more{i}.example", facts())
            assert store.domain(f"other{i}.example") is None
            assert store.tls_works(f"mx.other{i}.example") is None
        found = store.domain("Before.example")
        assert found is not None and found.catch_all is True  # this run's facts stay
        assert store.tls_works("mx.before.example") is True
        assert time.monotonic() - began < 2
        # The verdict cache on the same cache_url goes to memory without a second WARNING.
        key = address_key("jane@before.example")
        verdicts.put(key, Verdict("Valid", "mailbox_exists", time.time()))
        assert verdicts.get(key) is not None
        verdicts.commit()
        # A store opened later in the run does not dial the lost database again.
        later = PostgresDomainKnowledge(link, 7)
        assert later.domain("before.example") is None
        store.close()
        later.close()
        verdicts.close()
    assert link.dials == 3
    assert_one_warning(caplog, server.url)


def backend_pids(url: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as db:
        rows = db.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'mapper-emailverify'"
        ).fetchall()
    return [int(row[0]) for row in rows]


@pytest.mark.parametrize("failure", ["stopped", "frozen"])
def test_a_read_on_a_failed_database_never_holds_the_event_loop(
    make_postgres: Callable[[], Any], caplog: Any, failure: str
) -> None:
    """`stopped`: the server is gone (connections reset). `frozen`: its processes stopped (the
    kernel still accepts the bytes, nothing answers): the watchdog cuts the read."""
    server = make_postgres()
    store = PostgresDomainKnowledge(server.url, 7)
    assert store.domain("warm.example") is None  # the connection is up and used
    frozen = backend_pids(server.url)
    if failure == "stopped":
        server.stop()
    else:
        assert len(frozen) == 2  # the store's reader and writer
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)

    async def worst_gap() -> float:
        """The longest the loop went without running its other task, while names are looked up
        there as the engine does."""
        gaps: list[float] = []
        done = False

        async def heartbeat() -> None:
            last = time.monotonic()
            while not done:
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        beat = asyncio.ensure_future(heartbeat())
        await asyncio.sleep(0.05)
        for i in range(20):
            store.domain(f"new{i}.example")
            store.tls_works(f"mx.new{i}.example")
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)
        done = True
        await beat
        return max(gaps)

    try:
        with caplog.at_level(logging.WARNING):
            gap = asyncio.run(worst_gap())
            store.close()
    finally:
        for pid in frozen if failure == "frozen" else ():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    assert gap < 1.5, gap
    assert_one_warning(caplog, server.url)
    if failure == "frozen":
        assert "no answer within 1 s" in warnings_of(caplog)[0]


# -- the real executable ---------------------------------------------------------------------------

SCHEMA = {
    "type": "SCHEMA",
    "stream": "people",
    "key_properties": ["id"],
    "schema": {"properties": {"id": {"type": "integer"}, "email": {"type": ["string", "null"]}}},
}


def singer_lines(addresses: list[str]) -> list[str]:
    records = [
        {"type": "RECORD", "stream": "people", "record": {"id": i, "email": email}}
        for i, email in enumerate(addresses)
    ]
    return [json.dumps(line) + "\n" for line in [SCHEMA, *records]]


def two_of_each_domain(sandbox: Any, domains: int) -> tuple[list[str], list[str]]:
    """Two People of each of `domains` company domains probed for catch-all (catch-all or not)."""
    by_domain: dict[str, list[str]] = {}
    for p in sandbox.world.iter_people():
        email = (p.email or "").strip()
        if p.truth.case in ("normal", "catch_all") and email == p.email and "@" in email:
            by_domain.setdefault(email.rsplit("@", 1)[1].lower(), []).append(email)
    picked = [pair for pair in by_domain.values() if len(pair) >= 2][:domains]
    assert len(picked) == domains
    return [pair[0] for pair in picked], [pair[1] for pair in picked]


def test_a_second_run_with_only_cache_url_spends_no_probe_on_learned_domains(
    sandbox: Any, postgres_url: str, tmp_path: Path
) -> None:
    empty_database(postgres_url)
    first_people, second_people = two_of_each_domain(sandbox, 12)
    report = tmp_path / "report.json"
    config = config_file(sandbox, tmp_path, postgres_url, report_path=str(report))
    smtp = []
    for people in (first_people, second_people):  # other People, the same domains
        done = subprocess.run(
            [MAPPER, "--config", str(config)],
            input="".join(singer_lines(people)),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert cache_warnings(done.stderr) == [], done.stderr[-3000:]
        assert password_of(postgres_url) not in done.stderr
        smtp.append(json.loads(report.read_text())["smtp"])
    first, second = smtp
    assert first["catch_all_probes"] > 0
    assert second.get("catch_all_probes", 0) == 0, second
    assert second.get("catch_all_cached", 0) > 0, second


def test_a_database_stopped_mid_run_costs_the_mapper_one_warning_and_no_record(
    sandbox: Any, make_postgres: Callable[[], Any], tmp_path: Path
) -> None:
    server = make_postgres()
    first_people, second_people = two_of_each_domain(sandbox, 10)
    lines = singer_lines(first_people + second_people)
    half = 1 + len(first_people)

    def reached() -> bool:  # the first half's domain knowledge is in the database
        with psycopg.connect(server.url) as db:
            row = db.execute("SELECT COUNT(*) FROM ev_domains").fetchone()
        return row is not None and row[0] > 0

    config = config_file(sandbox, tmp_path, server.url)
    stdout, stderr = stop_server_mid_run(config, lines, half, server, reached)
    # One WARNING for everything kept in cache_url: verdicts, domain knowledge, mail host caps.
    [warning] = cache_warnings(stderr)
    assert "without the shared cache" in warning and "caps" in warning, warning
    assert "cache_url" in warning and "***" in warning, warning
    records = [m["record"] for m in map(json.loads, stdout.splitlines()) if m["type"] == "RECORD"]
    assert sorted(r["id"] for r in records) == list(range(len(lines) - 1))
