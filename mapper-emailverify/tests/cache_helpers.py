"""What the cache tests share (a helper module beside the tests, not a package): domain facts and a
clock tests move, a run's WARNINGs, a `cache_url`'s password, an emptied database, a mapper config
file for the sandbox, and `Backend`, stores of either domain-knowledge backend on one storage.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from mapper_emailverify.engine.domain_knowledge import DomainFacts, mx_digest
from mapper_emailverify.stream_map.domain_cache import DomainStore, SqliteDomainKnowledge
from mapper_emailverify.stream_map.domain_cache_pg import PostgresDomainKnowledge
from mapper_emailverify.stream_map.verdict_cache import ResultsCache, SqliteResultsCache
from mapper_emailverify.stream_map.verdict_cache_pg import PostgresResultsCache

MAPPER = str(Path(sys.executable).parent / "mapper-emailverify")
DIGEST = mx_digest(["mx1.example.net", "mx2.example.net"])


class Clock:
    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


def facts(**over: Any) -> DomainFacts:
    values: dict[str, Any] = {
        "mx_digest": DIGEST,
        "provider": "google_workspace",
        "catch_all": True,
        "greylisting": False,
    }
    values.update(over)
    return DomainFacts(**values)


def warnings_of(caplog: Any) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def password_of(url: str) -> str:
    password = urlsplit(url).password
    assert password
    return password


def empty_database(url: str) -> None:
    """Drop every table of the caches (the session's server is shared by the tests)."""
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("DROP TABLE IF EXISTS results, bounces, ev_domains, ev_mail_hosts")


def config_file(sandbox: Any, tmp_path: Path, url: str, **over: Any) -> Path:
    """A mapper config for the sandbox with `cache_url` (a new file each call)."""
    path = tmp_path / f"mapper-{time.monotonic_ns()}.json"
    config = sandbox.mapper_config(smtp_timeout=2, dns_timeout=2, cache_url=url, **over)
    path.write_text(json.dumps(config))
    return path


def cache_warnings(stderr: str) -> list[str]:
    return [row for row in stderr.splitlines() if "WARNING" in row and "cache" in row.lower()]


def stop_server_mid_run(
    config: Path, lines: list[str], half: int, server: Any, reached: Callable[[], bool]
) -> tuple[str, str]:
    """Run the mapper on `lines`: the first `half`, then, once `reached()` (what they wrote is in
    the database), stop `server` and send the rest. The run must still end well: its (stdout,
    stderr), with neither a traceback nor the password."""
    proc = subprocess.Popen(
        [MAPPER, "--config", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    proc.stdin.writelines(lines[:half])
    proc.stdin.flush()
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(psycopg.errors.UndefinedTable):
            if reached():
                break
        assert time.monotonic() < deadline, "nothing of the first half reached the database"
        time.sleep(0.1)
    server.stop()
    stdout, stderr = proc.communicate("".join(lines[half:]), timeout=120)
    assert proc.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert password_of(server.url) not in stderr
    return stdout, stderr


class Backend:
    """Domain-knowledge stores of one backend on one storage: `open()` is the next run's store."""

    def __init__(self, name: str, where: str) -> None:
        self.name, self.where = name, where

    @classmethod
    def of(cls, request: Any, tmp_path: Path) -> Backend:
        """For a fixture parametrized with "sqlite" and "postgres" (which empties the database
        of the session's server)."""
        if request.param == "postgres":
            url = request.getfixturevalue("postgres_url")
            empty_database(url)
            return cls("postgres", url)
        return cls("sqlite", str(tmp_path / "cache.sqlite"))

    def open(self, ttl_days: float = 7, **kwargs: Any) -> DomainStore[Any]:
        if self.name == "postgres":
            return PostgresDomainKnowledge(self.where, ttl_days, **kwargs)
        return SqliteDomainKnowledge(self.where, ttl_days, **kwargs)

    def verdicts(self, ttl_days: float = 30) -> ResultsCache:
        """The verdict cache on the same storage, as the mapper keeps it."""
        if self.name == "postgres":
            return PostgresResultsCache(self.where, ttl_days)
        return SqliteResultsCache(self.where, ttl_days)

    def count(self, table: str) -> int:
        prefix = "ev_" if self.name == "postgres" else ""  # PostgreSQL's: in a shared database
        query = f"SELECT COUNT(*) FROM {prefix}{table}"
        if self.name == "postgres":
            with psycopg.connect(self.where) as db:
                row = db.execute(query).fetchone()
        else:
            with contextlib.closing(sqlite3.connect(self.where)) as lite:
                row = lite.execute(query).fetchone()
        assert row is not None
        return int(row[0])
