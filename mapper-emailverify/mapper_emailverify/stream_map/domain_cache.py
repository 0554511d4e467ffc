"""Domain knowledge kept across runs: the engine's `DomainKnowledge` in the `cache_path` file.

What a run learned about a domain (the MX set it was learned on, the provider, catch-all or not,
greylisting seen) and about a mail host (STARTTLS works or not) is kept for
`domain_cache_ttl_days` in two tables of the verdict cache's SQLite file, so the next day's run
does not spend a catch-all probe per domain again:

    domains(key, mx_digest, provider, catch_all, greylisting, learned_at)
    mail_hosts(key, tls_works, learned_at)

The file names no domain and no host: a key is `sha256(salt + name)` with salts of their own, so a
domain key cannot be joined with an address key of `verdict_cache` (nor a host key with a domain
key). `mx_digest` is the engine's fingerprint of the MX set, `provider` a rule name such as
`google_workspace`.

The engine calls the store from its event loop, so no call waits on the disk for long and none
raises: reads are primary-key lookups on a connection of their own (WAL readers do not wait for
writers), answers are remembered in a bounded LRU, and writes go to a background thread that
commits every few seconds and at `close()`, with upserts so that several runs writing the same
domain never fail. Any SQLite error (a damaged file, a file that is not a database, a read-only
directory, a full disk, a lock held too long) gives one WARNING naming `cache_path`; the run then
goes on with what it learned in memory. The store is an optimisation, safe to delete with the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

from mapper_emailverify.engine.domain_knowledge import DomainFacts
from mapper_emailverify.stream_map.settings import DAY
from mapper_emailverify.stream_map.verdict_cache import brief, failure_kind, while_busy

#: Fixed salts of their own (see `verdict_cache.KEY_SALT`): stable across runs and machines, and a
#: domain key is never the key of an address or of a host name.
DOMAIN_KEY_SALT = b"mapper-emailverify/domain/v1\x00"
HOST_KEY_SALT = b"mapper-emailverify/mail-host/v1\x00"
#: Domains (and, apart, mail hosts) remembered in memory: answers read from the file, this run's
#: writes, and everything once the file failed.
MAX_ENTRIES = 50_000
_COMMIT_SECONDS = 2.0
#: A read on the event loop waits at most this long for a lock (WAL readers hardly ever do).
_READ_TIMEOUT = 0.2

_TABLES = """
CREATE TABLE IF NOT EXISTS domains (
    key TEXT PRIMARY KEY, mx_digest TEXT NOT NULL, provider TEXT, catch_all INTEGER,
    greylisting INTEGER NOT NULL, learned_at REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mail_hosts (
    key TEXT PRIMARY KEY, tls_works INTEGER NOT NULL, learned_at REAL NOT NULL) WITHOUT ROWID;
"""
#: The newer fact wins when two runs learned the same domain.
_UPSERT_DOMAIN = (
    "INSERT INTO domains VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
    "mx_digest = excluded.mx_digest, provider = excluded.provider, "
    "catch_all = excluded.catch_all, greylisting = excluded.greylisting, "
    "learned_at = excluded.learned_at WHERE excluded.learned_at >= domains.learned_at"
)
_UPSERT_HOST = (
    "INSERT INTO mail_hosts VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
    "tls_works = excluded.tls_works, learned_at = excluded.learned_at "
    "WHERE excluded.learned_at >= mail_hosts.learned_at"
)


def normalize_name(name: str) -> str:
    """One spelling of a domain or host name: trimmed, no final dot, lower case, punycode."""
    text = name.strip().rstrip(".")
    if not text.isascii():
        with contextlib.suppress(UnicodeError):
            text = text.encode("idna").decode("ascii")
    return text.lower()


def domain_key(name: str) -> str:
    return _key(DOMAIN_KEY_SALT, name)


def host_key(name: str) -> str:
    return _key(HOST_KEY_SALT, name)


def _key(salt: bytes, name: str) -> str:
    return hashlib.sha256(salt + normalize_name(name).encode("utf-8", "surrogatepass")).hexdigest()


class HostFact(NamedTuple):
    tls_works: bool
    learned_at: float  # Unix seconds


V = TypeVar("V")
_MISSING = object()


class _Lru(Generic[V]):
    """A bounded map, least recently used out first. Not locked: the store holds its lock."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max(1, max_entries)
        self._items: OrderedDict[str, V | None] = OrderedDict()

    def lookup(self, key: str) -> tuple[bool, V | None]:
        """(known, value): a known None is "not in the file"."""
        value = self._items.get(key, _MISSING)
        if value is _MISSING:
            return False, None
        self._items.move_to_end(key)
        return True, value  # type: ignore[return-value]  # not the sentinel here

    def put(self, key: str, value: V | None) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class SqliteDomainKnowledge:
    """`DomainKnowledge` in the SQLite file at `path` (the mapper's `cache_path`), reused for
    `ttl_days`; see the module docstring. `clock` gives Unix seconds (tests move it)."""

    def __init__(
        self,
        path: str | Path,
        ttl_days: float,
        *,
        logger: logging.Logger | None = None,
        busy_timeout: float = 30.0,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path).expanduser()
        self.ttl = max(0.0, float(ttl_days)) * DAY
        self.logger = logger or logging.getLogger(__name__)
        self.busy_timeout = busy_timeout
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._domains: _Lru[DomainFacts] = _Lru(max_entries)
        self._hosts: _Lru[HostFact] = _Lru(max_entries)
        #: Learned since the last commit (only while the file takes writes).
        self._pending_domains: dict[str, DomainFacts] = {}
        self._pending_hosts: dict[str, HostFact] = {}
        self._reader: sqlite3.Connection | None = None  # the event loop's, under `_lock`
        self._writer: sqlite3.Connection | None = None  # the writer thread's
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pruned = False
        self._failed = False  # the file failed once: memory only for the rest of the run
        self._closed = False
        try:
            self._writer = self._open_writer()
            self._reader = sqlite3.connect(
                self.path, timeout=_READ_TIMEOUT, check_same_thread=False, isolation_level=None
            )
            self._reader.execute("PRAGMA query_only = 1")
            self._reader.execute("SELECT 1 FROM domains LIMIT 1").fetchone()  # not a database?
        except (sqlite3.Error, OSError) as exc:
            self._fail(exc)

    # -- DomainKnowledge -------------------------------------------------------------------------

    def domain(self, name: str) -> DomainFacts | None:
        key = domain_key(name)
        with self._lock:
            known, facts = self._domains.lookup(key)
            if not known and self._reader is not None:
                read, row = self._read(
                    "SELECT mx_digest, provider, catch_all, greylisting, learned_at "
                    "FROM domains WHERE key = ?",
                    key,
                )
                if read:
                    facts = None if row is None else _facts(row)
                    self._domains.put(key, facts)
        return facts if facts is not None and self._fresh(facts.learned_at) else None

    def learn_domain(self, name: str, facts: DomainFacts) -> None:
        key = domain_key(name)
        if facts.learned_at <= 0:
            facts = dataclasses.replace(facts, learned_at=self._clock())
        with self._lock:
            self._domains.put(key, facts)
            if self._writing() and (
                key in self._pending_domains or len(self._pending_domains) < self.max_entries
            ):
                self._pending_domains[key] = facts
                self._start_writer()

    def tls_works(self, host: str) -> bool | None:
        key = host_key(host)
        with self._lock:
            known, fact = self._hosts.lookup(key)
            if not known and self._reader is not None:
                read, row = self._read(
                    "SELECT tls_works, learned_at FROM mail_hosts WHERE key = ?", key
                )
                if read:
                    fact = None if row is None else HostFact(bool(row[0]), float(row[1]))
                    self._hosts.put(key, fact)
        return fact.tls_works if fact is not None and self._fresh(fact.learned_at) else None

    def learn_tls(self, host: str, works: bool) -> None:
        key = host_key(host)
        fact = HostFact(bool(works), self._clock())
        with self._lock:
            self._hosts.put(key, fact)
            if self._writing() and (
                key in self._pending_hosts or len(self._pending_hosts) < self.max_entries
            ):
                self._pending_hosts[key] = fact
                self._start_writer()

    # -- the run's end ---------------------------------------------------------------------------

    def close(self) -> None:
        """Commit what is pending and close the file (later calls answer from memory)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        self._stop.set()
        if thread is not None:
            thread.join(timeout=self.busy_timeout + 5)
        else:
            self._close_writer()
        with self._lock:
            reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(sqlite3.Error):
                reader.close()

    @property
    def in_memory(self) -> tuple[int, int]:
        """Domains and mail hosts remembered in memory now (each at most `max_entries`)."""
        with self._lock:
            return len(self._domains), len(self._hosts)

    # -- reading ---------------------------------------------------------------------------------

    def _fresh(self, learned_at: float) -> bool:
        return learned_at + self.ttl >= self._clock() and self.ttl > 0

    def _read(self, sql: str, key: str) -> tuple[bool, tuple[Any, ...] | None]:
        """Under the lock: (read, row); not read when the file could not answer now."""
        assert self._reader is not None
        try:
            row: tuple[Any, ...] | None = self._reader.execute(sql, (key,)).fetchone()
        except sqlite3.Error as exc:
            # busy: another connection holds the file a moment, a miss
            if failure_kind(exc) != "busy":
                self._fail_locked(exc)
            return False, None
        return True, row

    # -- writing ---------------------------------------------------------------------------------

    def _writing(self) -> bool:
        return self._writer is not None and not self._failed and not self._closed

    def _start_writer(self) -> None:
        """Under the lock: the thread that commits this run's facts (started on the first one)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._write_until_closed, name="emailverify-domain-cache", daemon=True
            )
            self._thread.start()

    def _write_until_closed(self) -> None:
        try:
            while True:
                stopping = self._stop.wait(_COMMIT_SECONDS)
                self._flush()
                if stopping or self._failed:
                    return
        finally:
            self._close_writer()

    def _flush(self) -> None:
        """On the writer thread: commit the pending facts (and, first, forget expired ones)."""
        with self._lock:
            db = self._writer
            if db is None or self._failed:
                return
            domains, self._pending_domains = self._pending_domains, {}
            hosts, self._pending_hosts = self._pending_hosts, {}
        if not domains and not hosts:
            return
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                if not self._pruned:
                    oldest = self._clock() - self.ttl
                    db.execute("DELETE FROM domains WHERE learned_at < ?", (oldest,))
                    db.execute("DELETE FROM mail_hosts WHERE learned_at < ?", (oldest,))
                db.executemany(
                    _UPSERT_DOMAIN,
                    [
                        (
                            key,
                            f.mx_digest,
                            f.provider,
                            None if f.catch_all is None else int(f.catch_all),
                            int(f.greylisting),
                            f.learned_at,
                        )
                        for key, f in domains.items()
                    ],
                )
                db.executemany(
                    _UPSERT_HOST,
                    [(key, int(h.tls_works), h.learned_at) for key, h in hosts.items()],
                )
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self._fail(exc)  # the facts stay in the LRU for this run
            return
        self._pruned = True

    def _close_writer(self) -> None:
        with self._lock:
            db, self._writer = self._writer, None
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()

    # -- failures --------------------------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            self._fail_locked(exc)

    def _fail_locked(self, exc: BaseException) -> None:
        """Under the lock: one WARNING, then memory only (the writer thread closes its own
        connection when it sees `_failed`)."""
        if self._failed:
            return
        self._failed = True
        self._pending_domains.clear()
        self._pending_hosts.clear()
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(sqlite3.Error):
                reader.close()
        if self._thread is None:
            writer, self._writer = self._writer, None
            if writer is not None:
                with contextlib.suppress(sqlite3.Error):
                    writer.close()
        self._stop.set()
        self.logger.warning(
            "cache_path %s cannot keep domain knowledge (%s): this run goes on without domain "
            "knowledge from earlier runs, keeps what it learns in memory only, and the next run "
            "probes those domains again.",
            self.path,
            brief(exc),
        )

    # -- opening ---------------------------------------------------------------------------------

    def _open_writer(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            self.path, timeout=self.busy_timeout, check_same_thread=False, isolation_level=None
        )
        try:
            # A new file being set up by another run answers "database is locked" at once to the
            # journal-mode switch (no busy handler there): retry.
            self._patiently(lambda: db.execute("PRAGMA journal_mode=WAL").fetchone())
            db.execute("PRAGMA synchronous=NORMAL")
            self._patiently(lambda: db.executescript(_TABLES))
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.close()
            raise
        return db

    def _patiently(self, step: Callable[[], object]) -> None:
        while_busy(step, self.busy_timeout)


def open_domain_knowledge(
    cache_path: str | None, ttl_days: float, logger: logging.Logger | None = None
) -> SqliteDomainKnowledge | None:
    """The mapper's store: None without `cache_path` or when `domain_cache_ttl_days` is 0."""
    if not cache_path or ttl_days <= 0:
        return None
    return SqliteDomainKnowledge(cache_path, ttl_days, logger=logger)


def _facts(row: tuple[Any, ...]) -> DomainFacts:
    mx, provider, catch_all, greylisting, learned_at = row
    return DomainFacts(
        mx_digest=str(mx),
        provider=None if provider is None else str(provider),
        catch_all=None if catch_all is None else bool(catch_all),
        greylisting=bool(greylisting),
        learned_at=float(learned_at),
    )
