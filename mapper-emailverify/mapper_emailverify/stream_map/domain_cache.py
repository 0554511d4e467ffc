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

`DomainStore` is what this store shares with its PostgreSQL twin (`domain_cache_pg`, for
`cache_url`): keys, LRU, pending writes, writer thread and failure handling; a backend adds its
reads, its commit and its WARNING. `cache_choice.open_domain_knowledge` picks one.
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
from typing import Any, ClassVar, Generic, Literal, NamedTuple, TypeVar

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
#: A store's two reads; both backends give the same columns.
Kind = Literal["domain", "host"]
DOMAIN_COLUMNS = "mx_digest, provider, catch_all, greylisting, learned_at"
HOST_COLUMNS = "tls_works, learned_at"
_SELECT: dict[Kind, str] = {
    "domain": f"SELECT {DOMAIN_COLUMNS} FROM domains WHERE key = ?",
    "host": f"SELECT {HOST_COLUMNS} FROM mail_hosts WHERE key = ?",
}


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
C = TypeVar("C")  # a backend's connection
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


class DomainStore(Generic[C]):
    """What the SQLite and PostgreSQL stores share (`DomainKnowledge`, see the module docstring):
    the LRU of answers, this run's facts waiting for the writer thread, which commits them every
    `_COMMIT_SECONDS` and at `close()`, and memory only after the first failure (one WARNING).

    A backend opens `_reader` (the event loop's, used under `_lock`) and `_writer` (the writer
    thread's) and gives `_row` (one primary-key read), `_commit` (one short transaction),
    `_passing` (a failure that is only a miss), `_close_db` and `_report` (the WARNING)."""

    #: What the backend raises when it fails.
    _ERRORS: ClassVar[tuple[type[BaseException], ...]]

    def __init__(
        self,
        ttl_days: float,
        *,
        logger: logging.Logger | None,
        max_entries: int,
        clock: Callable[[], float],
        close_timeout: float,
    ) -> None:
        self.ttl = max(0.0, float(ttl_days)) * DAY
        self.logger = logger or logging.getLogger(__name__)
        self.max_entries = max_entries
        self._clock = clock
        self._close_timeout = close_timeout
        self._lock = threading.Lock()
        self._domains: _Lru[DomainFacts] = _Lru(max_entries)
        self._hosts: _Lru[HostFact] = _Lru(max_entries)
        #: Learned since the last commit (only while the store takes writes).
        self._pending_domains: dict[str, DomainFacts] = {}
        self._pending_hosts: dict[str, HostFact] = {}
        self._reader: C | None = None  # the event loop's, under `_lock`
        self._writer: C | None = None  # the writer thread's
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pruned = False
        self._failed = False  # the store failed once: memory only for the rest of the run
        self._closed = False

    # -- the backend -----------------------------------------------------------------------------

    def _row(self, db: C, kind: Kind, key: str) -> tuple[Any, ...] | None:
        """The row of `key` (`DOMAIN_COLUMNS` or `HOST_COLUMNS`), None when there is none."""
        raise NotImplementedError

    def _commit(
        self,
        db: C,
        domains: dict[str, DomainFacts],
        hosts: dict[str, HostFact],
        oldest: float | None,
    ) -> None:
        """Upsert the facts, newer wins (first deleting rows learned before `oldest`)."""
        raise NotImplementedError

    def _passing(self, exc: BaseException) -> bool:
        """Under the lock: whether a failed read is only a miss (the store goes on)."""
        return False

    def _gone(self) -> bool:
        """Under the lock: whether the store was lost elsewhere (say nothing, stop using it)."""
        return False

    def _close_db(self, db: C) -> None:
        raise NotImplementedError

    def _report(self, exc: BaseException) -> None:
        """The run's one WARNING about this store."""
        raise NotImplementedError

    # -- DomainKnowledge -------------------------------------------------------------------------

    def domain(self, name: str) -> DomainFacts | None:
        key = domain_key(name)
        with self._lock:
            known, facts = self._domains.lookup(key)
            if not known:
                read, row = self._read("domain", key)
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
            if not known:
                read, row = self._read("host", key)
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
        """Commit what is pending and close the store (later calls answer from memory)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        self._stop.set()
        if thread is not None:
            thread.join(timeout=self._close_timeout)
        else:
            self._close_writer()
        with self._lock:
            reader, self._reader = self._reader, None
        if reader is not None:
            self._close_db(reader)

    @property
    def in_memory(self) -> tuple[int, int]:
        """Domains and mail hosts remembered in memory now (each at most `max_entries`)."""
        with self._lock:
            return len(self._domains), len(self._hosts)

    # -- reading ---------------------------------------------------------------------------------

    def _fresh(self, learned_at: float) -> bool:
        return learned_at + self.ttl >= self._clock() and self.ttl > 0

    def _read(self, kind: Kind, key: str) -> tuple[bool, tuple[Any, ...] | None]:
        """Under the lock: (read, row); not read without a reader, or when the store could not
        answer now."""
        if self._reader is not None and self._gone():
            self._fail_locked(None)
        if self._reader is None:
            return False, None
        try:
            return True, self._row(self._reader, kind, key)
        except self._ERRORS as exc:
            if not self._passing(exc):
                self._fail_locked(exc)
            return False, None

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
            if self._writer is not None and self._gone():
                self._fail_locked(None)
            db = self._writer
            if db is None or self._failed:
                return
            domains, self._pending_domains = self._pending_domains, {}
            hosts, self._pending_hosts = self._pending_hosts, {}
        if not domains and not hosts:
            return
        try:
            self._commit(db, domains, hosts, None if self._pruned else self._clock() - self.ttl)
        except self._ERRORS as exc:
            self._fail(exc)  # the facts stay in the LRU for this run
            return
        self._pruned = True

    def _close_writer(self) -> None:
        with self._lock:
            db, self._writer = self._writer, None
        if db is not None:
            self._close_db(db)

    # -- failures --------------------------------------------------------------------------------

    def _fail(self, exc: BaseException | None) -> None:
        with self._lock:
            self._fail_locked(exc)

    def _fail_locked(self, exc: BaseException | None) -> None:
        """Under the lock: one WARNING (none for None), then memory only (the writer thread
        closes its own connection when it sees `_failed`)."""
        if self._failed:
            return
        self._failed = True
        self._pending_domains.clear()
        self._pending_hosts.clear()
        reader, self._reader = self._reader, None
        if reader is not None:
            self._close_db(reader)
        if self._thread is None:
            writer, self._writer = self._writer, None
            if writer is not None:
                self._close_db(writer)
        self._stop.set()
        if exc is not None:
            self._report(exc)


def domain_rows(domains: dict[str, DomainFacts]) -> list[tuple[Any, ...]]:
    """The rows of `domains` in column order (the key, then `DOMAIN_COLUMNS`), by key."""
    return [
        (key, f.mx_digest, f.provider, f.catch_all, f.greylisting, f.learned_at)
        for key, f in sorted(domains.items())
    ]


def host_rows(hosts: dict[str, HostFact]) -> list[tuple[Any, ...]]:
    return [(key, h.tls_works, h.learned_at) for key, h in sorted(hosts.items())]


class SqliteDomainKnowledge(DomainStore[sqlite3.Connection]):
    """`DomainKnowledge` in the SQLite file at `path` (the mapper's `cache_path`), reused for
    `ttl_days`; see the module docstring. `clock` gives Unix seconds (tests move it)."""

    _ERRORS = (sqlite3.Error, OSError)

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
        super().__init__(
            ttl_days,
            logger=logger,
            max_entries=max_entries,
            clock=clock,
            close_timeout=busy_timeout + 5,
        )
        self.path = Path(path).expanduser()
        self.busy_timeout = busy_timeout
        try:
            self._writer = self._open_writer()
            self._reader = sqlite3.connect(
                self.path, timeout=_READ_TIMEOUT, check_same_thread=False, isolation_level=None
            )
            self._reader.execute("PRAGMA query_only = 1")
            self._reader.execute("SELECT 1 FROM domains LIMIT 1").fetchone()  # not a database?
        except self._ERRORS as exc:
            self._fail(exc)

    # -- the backend -----------------------------------------------------------------------------

    def _row(self, db: sqlite3.Connection, kind: Kind, key: str) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = db.execute(_SELECT[kind], (key,)).fetchone()
        return row

    def _passing(self, exc: BaseException) -> bool:
        # busy: another connection holds the file a moment, a miss
        return isinstance(exc, sqlite3.Error) and failure_kind(exc) == "busy"

    def _commit(
        self,
        db: sqlite3.Connection,
        domains: dict[str, DomainFacts],
        hosts: dict[str, HostFact],
        oldest: float | None,
    ) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            if oldest is not None:
                db.execute("DELETE FROM domains WHERE learned_at < ?", (oldest,))
                db.execute("DELETE FROM mail_hosts WHERE learned_at < ?", (oldest,))
            db.executemany(_UPSERT_DOMAIN, domain_rows(domains))
            db.executemany(_UPSERT_HOST, host_rows(hosts))
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    def _close_db(self, db: sqlite3.Connection) -> None:
        with contextlib.suppress(sqlite3.Error):
            db.close()

    def _report(self, exc: BaseException) -> None:
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


def _facts(row: tuple[Any, ...]) -> DomainFacts:
    mx, provider, catch_all, greylisting, learned_at = row
    return DomainFacts(
        mx_digest=str(mx),
        provider=None if provider is None else str(provider),
        catch_all=None if catch_all is None else bool(catch_all),
        greylisting=bool(greylisting),
        learned_at=float(learned_at),
    )
