"""`cache_url`: the domain knowledge in PostgreSQL, shared by several workers.

The same store as `SqliteDomainKnowledge` (`domain_cache.DomainStore`: the same salted keys, TTL,
LRU of answers, newer-wins upserts and writer thread), in two tables of the `cache_url` database:

    ev_domains(key, mx_digest, provider, catch_all, greylisting, learned_at)
    ev_mail_hosts(key, tls_works, learned_at)

Imported only when `cache_url` is set, so a SQLite or in-memory run never loads psycopg.

The engine asks the store from its event loop, and here a read is a network round trip, so each
one is bounded three ways: the server ends it after `_READ_TIMEOUT` (a miss; after `_SLOW_READS`
such misses the store stops reading and answers from memory), the kernel gives up on a peer that
acknowledges nothing after `_READ_DEADLINE`, and a watchdog cuts the connection of a read still
waiting at `_READ_DEADLINE` (a server that accepts bytes but never answers). Writes go to the
writer thread's own connection, one short transaction every couple of seconds, never held while
the engine talks to a mail server. Any other failure is a lost database: one WARNING for the run
(shared with the verdict cache through `CacheUrl`, the password shown as ***), then memory only,
and no store dials the database again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from mapper_emailverify.engine.domain_knowledge import DomainFacts
from mapper_emailverify.stream_map.domain_cache import (
    DOMAIN_COLUMNS,
    HOST_COLUMNS,
    MAX_ENTRIES,
    DomainStore,
    HostFact,
    Kind,
    domain_rows,
    host_rows,
)
from mapper_emailverify.stream_map.verdict_cache_pg import CacheUrl, in_one_transaction

#: The server ends a read after this long (a miss, as a busy SQLite file is).
_READ_TIMEOUT = 0.2
#: Reads ended so before the store stops reading for the run (it still writes).
_SLOW_READS = 3
#: A read still waiting after this long has its connection cut: the database counts as lost.
_READ_DEADLINE = 1.0
#: The writer thread's statements (one transaction of a few hundred upserts at most).
_WRITE_TIMEOUT = 15.0

_TABLES = (
    "CREATE TABLE IF NOT EXISTS ev_domains (key TEXT PRIMARY KEY, mx_digest TEXT NOT NULL, "
    "provider TEXT, catch_all BOOLEAN, greylisting BOOLEAN NOT NULL, "
    "learned_at DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ev_mail_hosts (key TEXT PRIMARY KEY, tls_works BOOLEAN NOT NULL, "
    "learned_at DOUBLE PRECISION NOT NULL)",
)
_SELECT: dict[Kind, str] = {
    "domain": f"SELECT {DOMAIN_COLUMNS} FROM ev_domains WHERE key = %s",
    "host": f"SELECT {HOST_COLUMNS} FROM ev_mail_hosts WHERE key = %s",
}
#: The newer fact wins, whichever worker commits last.
_UPSERT_DOMAIN = (
    "INSERT INTO ev_domains AS t VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (key) DO UPDATE SET "
    "mx_digest = EXCLUDED.mx_digest, provider = EXCLUDED.provider, "
    "catch_all = EXCLUDED.catch_all, greylisting = EXCLUDED.greylisting, "
    "learned_at = EXCLUDED.learned_at WHERE EXCLUDED.learned_at >= t.learned_at"
)
_UPSERT_HOST = (
    "INSERT INTO ev_mail_hosts AS t VALUES (%s, %s, %s) ON CONFLICT (key) DO UPDATE SET "
    "tls_works = EXCLUDED.tls_works, learned_at = EXCLUDED.learned_at "
    "WHERE EXCLUDED.learned_at >= t.learned_at"
)
_PRUNE = (
    "DELETE FROM ev_domains WHERE learned_at < %s",
    "DELETE FROM ev_mail_hosts WHERE learned_at < %s",
)

Connection = psycopg.Connection[tuple[Any, ...]]


class PostgresDomainKnowledge(DomainStore[Connection]):
    """`DomainKnowledge` in the `cache_url` database (a URL, or the `CacheUrl` the run's verdict
    cache uses), reused for `ttl_days`; see the module docstring. Never raises: a database that
    cannot be used, at start too, gives the run's one WARNING and memory only."""

    _ERRORS = (psycopg.Error,)

    def __init__(
        self,
        url: str | CacheUrl,
        ttl_days: float,
        *,
        logger: logging.Logger | None = None,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.time,
        connect_timeout: float = 10.0,
        read_timeout: float = _READ_TIMEOUT,
        read_deadline: float = _READ_DEADLINE,
    ) -> None:
        self.link = url if isinstance(url, CacheUrl) else CacheUrl(url, logger)
        super().__init__(
            ttl_days,
            logger=self.link.logger,
            max_entries=max_entries,
            clock=clock,
            close_timeout=_WRITE_TIMEOUT + 5,
        )
        self._slow_reads = 0
        self._watchdog = _Watchdog(read_deadline)
        if self.link.down:
            self._fail(None)
            return
        try:
            self._writer = self.link.connect(
                _TABLES, connect_timeout=connect_timeout, statement_timeout=_WRITE_TIMEOUT
            )
            self._reader = self.link.connect(
                (),
                connect_timeout=connect_timeout,
                statement_timeout=read_timeout,
                give_up_after=read_deadline,
            )
        except psycopg.Error as exc:
            self._fail(exc)

    def close(self) -> None:
        super().close()
        self._watchdog.stop()

    # -- the backend -----------------------------------------------------------------------------

    def _row(self, db: Connection, kind: Kind, key: str) -> tuple[Any, ...] | None:
        with self._watchdog.watching(db):
            return db.execute(_SELECT[kind], (key,)).fetchone()

    def _passing(self, exc: BaseException) -> bool:
        if not isinstance(exc, pg_errors.QueryCanceled):
            return False
        self._slow_reads += 1
        if self._slow_reads >= _SLOW_READS:  # a slow database must not slow the event loop
            reader, self._reader = self._reader, None
            if reader is not None:
                self._close_db(reader)
            self.logger.info(
                "cache_url %s answered %d reads of domain knowledge slower than %d ms: this run "
                "stops reading it (what it learns is still written).",
                self.link.shown,
                self._slow_reads,
                round(_READ_TIMEOUT * 1000),
            )
        return True

    def _gone(self) -> bool:
        return self.link.down

    def _commit(
        self,
        db: Connection,
        domains: dict[str, DomainFacts],
        hosts: dict[str, HostFact],
        oldest: float | None,
    ) -> None:
        if oldest is not None:  # on its own: a long delete must not hold the upserts' row locks
            for statement in _PRUNE:
                db.execute(statement, (oldest,))
        statements = [(_UPSERT_DOMAIN, row) for row in domain_rows(domains)]
        statements += [(_UPSERT_HOST, row) for row in host_rows(hosts)]
        if not in_one_transaction(db, statements):
            self.logger.debug("domain knowledge: a batch kept deadlocking; kept in memory")

    def _close_db(self, db: Connection) -> None:
        with contextlib.suppress(Exception):
            db.close()

    def _report(self, exc: BaseException) -> None:
        self.link.lost(exc)


class _Watchdog:
    """Cuts the connection of a read that outlasts `seconds`: `shutdown()` of its socket (not
    `close()`: the descriptor stays libpq's), which ends the blocked read at once with an error.
    One daemon thread per store, started on the first read."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._cond = threading.Condition()
        self._fd: int | None = None  # the socket of the read in progress
        self._deadline = 0.0
        self._cut = False  # the read in progress was cut
        self._thread: threading.Thread | None = None
        self._stopped = False

    @contextlib.contextmanager
    def watching(self, db: Connection) -> Iterator[None]:
        with self._cond:
            self._fd, self._cut = db.pgconn.socket, False
            self._deadline = time.monotonic() + self.seconds
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(
                    target=self._watch, name="emailverify-domain-cache-watchdog", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        try:
            yield
        except psycopg.OperationalError as exc:
            if self._cut:  # say why, not "server closed the connection"
                raise psycopg.OperationalError(f"no answer within {self.seconds:g} s") from exc
            raise
        finally:
            with self._cond:
                self._fd = None

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _watch(self) -> None:
        with self._cond:
            while not self._stopped:
                if self._fd is None:
                    self._cond.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                with contextlib.suppress(OSError), socket.socket(fileno=os.dup(self._fd)) as cut:
                    cut.shutdown(socket.SHUT_RDWR)
                self._fd, self._cut = None, True
