"""Domain knowledge carries across runs (issue 18, item 4), and never costs a run.

`SqliteDomainKnowledge` keeps what the engine learns about domains and mail hosts in the
`cache_path` file for `domain_cache_ttl_days`: a second store on the same file (the next run) reads
what the first learned, entries past the TTL are not returned, a domain whose MX set changed is
learned again, the file names no domain or host, several stores write the same domains at once,
and a damaged, foreign, unwritable or locked file gives one WARNING naming `cache_path` while the
store answers from memory.

The cases of a store's answers run over both backends (`backend`): `PostgresDomainKnowledge`
(`cache_url`, issue 21) must answer as SQLite does for the same writes. Its own cases (a database
lost or frozen mid-run, several workers) are in `test_domain_cache_pg.py`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from mapper_emailverify import Verifier
from mapper_emailverify.engine.domain_knowledge import DomainKnowledge, mx_digest
from mapper_emailverify.engine.errors import ConfigError
from mapper_emailverify.stream_map.cache_choice import open_domain_knowledge
from mapper_emailverify.stream_map.domain_cache import (
    SqliteDomainKnowledge,
    domain_key,
    host_key,
)
from mapper_emailverify.stream_map.settings import DAY, MapperSettings
from mapper_emailverify.stream_map.verdict_cache import (
    SqliteResultsCache,
    Verdict,
    address_key,
)

sys.path.insert(0, str(Path(__file__).parent))
from cache_helpers import DIGEST, MAPPER, Backend, Clock, facts, warnings_of  # beside the tests


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: Any, tmp_path: Path) -> Backend:
    return Backend.of(request, tmp_path)


def test_the_store_is_the_engines_domain_knowledge(tmp_path: Path) -> None:
    store: DomainKnowledge = SqliteDomainKnowledge(tmp_path / "cache.sqlite", 7)
    assert store.domain("example.com") is None
    assert store.tls_works("mx.example.com") is None


# -- across runs -----------------------------------------------------------------------------------


def test_a_second_run_reads_what_the_first_learned(backend: Backend, caplog: Any) -> None:
    with caplog.at_level(logging.WARNING):
        first = backend.open()
        first.learn_domain("Catch.Example.", facts())
        first.learn_domain("strict.example", facts(catch_all=False, provider=None))
        first.learn_domain("unknown.example", facts(catch_all=None, greylisting=True))
        first.learn_tls("MX1.Example.net", True)
        first.learn_tls("mx2.example.net.", False)
        # This run answers at once, before anything is committed.
        assert first.domain("catch.example") == first.domain("CATCH.EXAMPLE")
        first.close()

        second = backend.open()
        caught = second.domain("catch.example")
        assert caught is not None
        assert (caught.mx_digest, caught.provider, caught.catch_all, caught.greylisting) == (
            DIGEST,
            "google_workspace",
            True,
            False,
        )
        assert caught.learned_at == pytest.approx(time.time(), abs=60)
        strict = second.domain("Strict.Example")
        assert strict is not None and (strict.catch_all, strict.provider) == (False, None)
        unknown = second.domain("unknown.example")
        assert unknown is not None and (unknown.catch_all, unknown.greylisting) == (None, True)
        assert second.domain("never.example") is None
        assert second.tls_works("mx1.example.net") is True
        assert second.tls_works("MX2.example.net") is False
        assert second.tls_works("mx3.example.net") is None
        second.close()
    assert warnings_of(caplog) == []


def test_the_newer_fact_wins_and_a_given_learned_at_is_kept(backend: Backend) -> None:
    now = time.time()
    store = backend.open()
    store.learn_domain("a.example", facts(catch_all=False, learned_at=now - 3600))
    store.close()
    later = backend.open()
    later.learn_domain("a.example", facts(catch_all=True, learned_at=now - 7200))  # older
    later.close()
    found = backend.open().domain("a.example")
    assert found is not None and found.catch_all is False
    assert found.learned_at == pytest.approx(now - 3600)


def test_writes_are_committed_while_the_run_goes_on(backend: Backend) -> None:
    store = backend.open()
    store.learn_domain("early.example", facts())
    deadline = time.monotonic() + 10
    other = backend.open()
    while other.domain("early.example") is None:  # a miss is remembered: ask a new store
        assert time.monotonic() < deadline, "never committed before close()"
        time.sleep(0.2)
        other.close()
        other = backend.open()
    other.close()
    store.close()


# -- the TTL ---------------------------------------------------------------------------------------


def test_entries_older_than_the_ttl_are_not_returned_and_are_pruned(backend: Backend) -> None:
    clock = Clock()
    first = backend.open(clock=clock)
    first.learn_domain("old.example", facts())
    first.learn_tls("mx.old.example", True)
    assert first.domain("old.example") is not None
    clock.now += 7 * DAY + 60  # past the TTL within the same run too
    assert first.domain("old.example") is None
    assert first.tls_works("mx.old.example") is None
    first.close()

    clock.now -= 60 + DAY  # six days later
    six_days = backend.open(clock=clock)
    assert six_days.domain("old.example") is not None
    assert six_days.tls_works("mx.old.example") is True
    six_days.close()

    clock.now += 2 * DAY  # eight days later
    eight_days = backend.open(clock=clock)
    assert eight_days.domain("old.example") is None
    assert eight_days.tls_works("mx.old.example") is None
    eight_days.learn_domain("new.example", facts())  # the first write prunes what expired
    eight_days.close()
    assert (backend.count("domains"), backend.count("mail_hosts")) == (1, 0)


def test_a_longer_ttl_reads_what_a_shorter_one_would_not(backend: Backend) -> None:
    clock = Clock()
    store = backend.open(30, clock=clock)
    store.learn_domain("a.example", facts())
    store.close()
    clock.now += 10 * DAY
    assert backend.open(7, clock=clock).domain("a.example") is None
    assert backend.open(30, clock=clock).domain("a.example") is not None


def test_ttl_zero_reuses_nothing_and_the_mapper_then_opens_no_store(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    first = SqliteDomainKnowledge(path, 7)
    first.learn_domain("a.example", facts())
    first.close()
    assert SqliteDomainKnowledge(path, 0).domain("a.example") is None
    assert open_domain_knowledge(str(path), 0) is None
    assert open_domain_knowledge(None, 7) is None
    assert open_domain_knowledge("", 7) is None
    store = open_domain_knowledge(str(path), 7)
    assert store is not None and store.domain("a.example") is not None
    store.close()


def test_the_setting_is_declared_once_with_its_default_and_limit() -> None:
    assert MapperSettings().domain_cache_ttl_days == 7
    assert MapperSettings.from_config({"domain_cache_ttl_days": 0}).domain_cache_ttl_days == 0
    with pytest.raises(ConfigError, match="domain_cache_ttl_days"):
        MapperSettings.from_config({"domain_cache_ttl_days": -1})


# -- an MX change, through the engine --------------------------------------------------------------


def test_an_mx_change_is_learned_again_and_then_reused(backend: Backend, sandbox: Any) -> None:
    first, second = [
        p.email.strip()
        for p in sandbox.world.iter_people()
        if p.email and p.truth.case == "catch_all" and p.email.strip().endswith("-1.example")
    ][:2]
    domain = first.rsplit("@", 1)[1]
    stale = facts(mx_digest=mx_digest(["mx.old-provider.example"]), catch_all=False, provider=None)
    store = backend.open()
    store.learn_domain(domain, stale)  # learned on another MX set: the domain moved since
    store.close()

    def run(address: str) -> tuple[str, int, int]:
        """A run of the engine with a store: (status, catch-all probes, answers from the store)."""
        store = backend.open()

        async def go() -> tuple[str, Counter[str]]:
            config = sandbox.mapper_config(smtp_timeout=2, dns_timeout=2)
            async with Verifier(config, knowledge=store) as verifier:
                return str((await verifier.verify(address)).status), Counter(verifier.counters)

        status, counters = asyncio.run(go())
        store.close()
        return status, counters["catch_all_probes"], counters["catch_all_cached"]

    assert run(first) == ("Catch-All", 1, 0)  # the stale facts are not used
    relearned = backend.open().domain(domain)
    assert relearned is not None and relearned.catch_all is True
    assert relearned.mx_digest != stale.mx_digest
    assert run(second) == ("Catch-All", 0, 1)  # the next run


# -- privacy ---------------------------------------------------------------------------------------


def test_the_file_names_no_domain_and_no_host(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    domains = [f"secretcorp{i}.example" for i in range(200)] + ["Bücher-Geheim.example"]
    hosts = [f"mailhost{i}.secretcorp.example" for i in range(200)]
    results = SqliteResultsCache(path, 30)
    results.put(address_key("someone@secretcorp0.example"), Verdict("Valid", "x", time.time()))
    results.commit()  # as the mapper's ticker does: the new tables need the write lock once
    store = SqliteDomainKnowledge(path, 7)
    for name in domains:
        store.learn_domain(name, facts())
    for name in hosts:
        store.learn_tls(name, True)
    results.close()
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert len(raw) > 10_000
    for needle in ("secretcorp", "mailhost", "Geheim", "geheim", "xn--bcher", "example"):
        assert needle.encode() not in raw, needle
        assert needle.encode("utf-16-le") not in raw, needle
    # Keys of their own: a domain key is not the key of an address or host of the same text.
    assert len({domain_key("a.example"), host_key("a.example"), address_key("a.example")}) == 3
    db = sqlite3.connect(path)
    keys = {row[0] for row in db.execute("SELECT key FROM domains")}
    assert domain_key("secretcorp7.example") in keys and len(keys) == len(domains)
    db.close()


# -- several runs at once --------------------------------------------------------------------------


def test_two_runs_writing_the_same_domains_at_once(backend: Backend, caplog: Any) -> None:
    names = [f"d{i}.example" for i in range(600)]
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def run(catch_all: bool) -> None:
        try:
            store = backend.open()
            start.wait(30)
            for round_ in range(3):
                for name in names:
                    store.learn_domain(name, facts(catch_all=catch_all))
                    store.learn_tls(f"mx.{name}", catch_all)
                    store.domain(name)
                time.sleep(0.05 * round_)
            store.close()
        except BaseException as exc:
            errors.append(exc)

    # The verdict cache shares the file (the database), holding its write lock between its own
    # commits in SQLite.
    results = backend.verdicts()
    threads = [threading.Thread(target=run, args=(flag,)) for flag in (True, False)]
    with caplog.at_level(logging.WARNING):
        for thread in threads:
            thread.start()
        start.wait(30)
        for i in range(2000):
            results.put(address_key(f"u{i}@d{i % 600}.example"), Verdict("Valid", "x", time.time()))
            if i % 250 == 0:
                results.commit()
        results.close()
        for thread in threads:
            thread.join(60)
    assert errors == []
    assert warnings_of(caplog) == []
    reader = backend.open()
    for name in names:
        found = reader.domain(name)
        assert found is not None and found.catch_all in (True, False)
        assert reader.tls_works(f"mx.{name}") in (True, False)
    reader.close()


def test_opening_waits_for_the_verdict_caches_commit(tmp_path: Path, caplog: Any) -> None:
    """In the mapper the engine (and this store) starts while the verdict cache may hold its write
    transaction open (bounces read first); the mapper's ticker commits it within a moment."""
    path = tmp_path / "cache.sqlite"
    results = SqliteResultsCache(path, 30)
    results.add_bounce(address_key("gone@example.com"))  # a write transaction, not committed
    threading.Timer(0.5, results.commit).start()
    with caplog.at_level(logging.WARNING):
        began = time.monotonic()
        store = SqliteDomainKnowledge(path, 7)
        assert time.monotonic() - began < 10
        store.learn_domain("a.example", facts())
        store.close()
    results.close()
    assert warnings_of(caplog) == []
    assert SqliteDomainKnowledge(path, 7).domain("a.example") is not None


# -- a file that fails -----------------------------------------------------------------------------


def _exercise(store: SqliteDomainKnowledge) -> None:
    """What the engine does in a run: never raises, and what it learned is answered from memory."""
    assert store.domain("a.example") is None
    store.learn_domain("a.example", facts())
    store.learn_tls("mx.a.example", True)
    for i in range(50):
        store.learn_domain(f"more{i}.example", facts())
        store.domain(f"other{i}.example")
        store.tls_works(f"mx.other{i}.example")
    found = store.domain("A.example")
    assert found is not None and found.catch_all is True
    assert store.tls_works("mx.a.example") is True
    store.close()
    store.close()
    assert store.domain("a.example") is not None  # still answered after close


def _assert_one_warning(caplog: Any, path: Path) -> None:
    warnings = warnings_of(caplog)
    assert len(warnings) == 1, warnings
    assert "cache_path" in warnings[0] and str(path) in warnings[0]
    assert "without domain knowledge" in warnings[0]


def test_a_file_that_is_no_database_degrades_to_memory(tmp_path: Path, caplog: Any) -> None:
    path = tmp_path / "cache.sqlite"
    path.write_bytes(b"this is no SQLite file\n" * 4096)
    with caplog.at_level(logging.WARNING):
        _exercise(SqliteDomainKnowledge(path, 7))
    _assert_one_warning(caplog, path)
    assert path.read_bytes() == b"this is no SQLite file\n" * 4096  # left to the verdict cache


def test_a_page_damaged_before_the_run_degrades_to_memory(tmp_path: Path, caplog: Any) -> None:
    path = tmp_path / "cache.sqlite"
    store = SqliteDomainKnowledge(path, 7)
    names = [f"d{i}.example" for i in range(3000)]
    for name in names:
        store.learn_domain(name, facts())
    store.close()
    db = sqlite3.connect(path)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.close()
    assert pages >= 10
    with path.open("r+b") as raw:  # the header stays intact: opening works
        raw.seek((pages // 2) * page_size)
        raw.write(bytes(range(256)) * (page_size // 256))
    with caplog.at_level(logging.WARNING):
        damaged = SqliteDomainKnowledge(path, 7)
        found = [damaged.domain(name) for name in names]  # never raises
        assert found.count(None) > 0
        _exercise(damaged)
    _assert_one_warning(caplog, path)


def test_a_directory_that_cannot_hold_the_file_degrades_to_memory(
    tmp_path: Path, caplog: Any
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    path = blocker / "cache.sqlite"
    with caplog.at_level(logging.WARNING):
        _exercise(SqliteDomainKnowledge(path, 7))
    _assert_one_warning(caplog, path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_directory_degrades_to_memory(tmp_path: Path, caplog: Any) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    path = folder / "cache.sqlite"
    try:
        with caplog.at_level(logging.WARNING):
            _exercise(SqliteDomainKnowledge(path, 7))
    finally:
        folder.chmod(0o755)
    _assert_one_warning(caplog, path)


def test_a_lock_held_too_long_stops_writes_with_one_warning(tmp_path: Path, caplog: Any) -> None:
    path = tmp_path / "cache.sqlite"
    SqliteDomainKnowledge(path, 7).close()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another run holds the write lock past busy_timeout
    try:
        with caplog.at_level(logging.WARNING):
            store = SqliteDomainKnowledge(path, 7, busy_timeout=0.3)
            began = time.monotonic()
            _exercise(store)  # close() waits for the commit that fails
            assert time.monotonic() - began < 10
    finally:
        other.execute("ROLLBACK")
        other.close()
    _assert_one_warning(caplog, path)
    assert SqliteDomainKnowledge(path, 7).domain("a.example") is None  # nothing was written


def test_odd_names_never_raise(tmp_path: Path) -> None:
    store = SqliteDomainKnowledge(tmp_path / "cache.sqlite", 7)
    for name in ("", ".", "\ud83d.example", "x" * 5000, "bücher.example", "a..b", " A.example. "):
        store.learn_domain(name, facts())
        assert store.domain(name) is not None
        store.learn_tls(name, False)
        assert store.tls_works(name) is False
    store.close()


# -- memory ----------------------------------------------------------------------------------------


def test_memory_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    writer = SqliteDomainKnowledge(path, 7)
    for i in range(2000):
        writer.learn_domain(f"d{i}.example", facts())
    writer.close()
    store = SqliteDomainKnowledge(path, 7, max_entries=100)
    for i in range(2000):
        assert store.domain(f"d{i}.example") is not None
        store.domain(f"missing{i}.example")
        store.learn_tls(f"mx{i}.example", True)
    assert store.in_memory == (100, 100)
    store.close()
    (tmp_path / "blocker").write_text("")
    broken = SqliteDomainKnowledge(tmp_path / "blocker" / "c.sqlite", 7, max_entries=50)
    for i in range(1000):
        broken.learn_domain(f"d{i}.example", facts())
        broken.learn_tls(f"mx{i}.example", True)
    assert broken.in_memory == (50, 50)
    assert broken.domain("d999.example") is not None  # the most recent are kept
    assert broken.domain("d0.example") is None
    broken.close()


# -- through the mapper ----------------------------------------------------------------------------


@pytest.mark.slow
def test_the_mapper_keeps_domain_knowledge_next_to_its_cache(sandbox: Any, tmp_path: Path) -> None:
    cache = tmp_path / "cache.sqlite"
    config = tmp_path / "mapper.json"
    config.write_text(
        json.dumps(sandbox.mapper_config(smtp_check=False, dns_timeout=2.0, cache_path=str(cache)))
    )
    lines = [
        {
            "type": "SCHEMA",
            "stream": "people",
            "key_properties": ["cio_id"],
            "schema": {
                "type": "object",
                "properties": {"cio_id": {"type": "string"}, "email": {"type": "string"}},
            },
        },
        *(
            {
                "type": "RECORD",
                "stream": "people",
                "record": {"cio_id": str(i), "email": f"user{i}@gone-{i}.example"},
            }
            for i in range(5)
        ),
    ]
    done = subprocess.run(
        [MAPPER, "--config", str(config)],
        input="".join(json.dumps(line) + "\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert [row for row in done.stderr.splitlines() if "WARNING" in row] == []
    db = sqlite3.connect(cache)
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    db.close()
    assert {"results", "domains", "mail_hosts"} <= tables
