"""Verdicts remembered across runs and within one, keyed by a salted hash of the address.

The SQLite file holds no address: only `sha256(salt + normalized address)`, the verdict and when it
was reached. Hard-bounce history is kept the same way, so a later run knows an address bounced
without the file ever naming it. Without `cache_path` the same interface is served from a bounded
in-memory LRU, so a run still verifies each distinct address once without memory growing with the
input.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from mapper_emailverify.stream_map.settings import DAY, HOUR, MapperSettings

#: Fixed salt: keys are stable across runs and machines, yet a leaked file cannot be joined
#: against a plain list of hashed addresses made by someone else.
KEY_SALT = b"mapper-emailverify/v1\x00"
#: Unknown verdicts that describe the moment rather than the mailbox (a fault, a greylist, a full
#: mailbox for now): trusted for `reverify_unknown_after_hours` only, so the next scheduled run
#: retries them.
TRANSIENT_SUBSTATUSES = frozenset(
    {
        "smtp_timeout",
        "smtp_connection_failed",
        "greylisted",
        "smtp_blocked",
        "dns_error",
        "smtp_unavailable",
        "mailbox_full",
    }
)
#: Declared once, with the setting `reverify_unknown_after_hours`.
DEFAULT_TRANSIENT_HOURS: float = MapperSettings.reverify_unknown_after_hours


def is_transient(status: str, substatus: str) -> bool:
    return status == "Unknown" and substatus in TRANSIENT_SUBSTATUSES


def lifetime(status: str, substatus: str, ttl: float, transient_ttl: float) -> float:
    """Seconds a verdict stays trustworthy: `ttl`, or less for a transient Unknown."""
    return min(ttl, transient_ttl) if is_transient(status, substatus) else ttl


_COMMIT_EVERY = 500
_COMMIT_SECONDS = 2.0
#: Keys per query of `prefetch` (SQLite allows 32,766 parameters since 3.32, 999 before).
_PREFETCH_KEYS = 500
#: A key `prefetch` did not read (None: it read the key and found no row).
_UNFETCHED: Any = object()


class Verdict(NamedTuple):
    status: str
    substatus: str
    validated_at: float  # Unix seconds


def normalize_address(address: str) -> str:
    """What makes two spellings one mailbox: trimmed, case-folded, domain in ASCII (punycode)."""
    text = address.strip()
    if text.isascii():
        return text.lower()
    local, at, domain = text.rpartition("@")
    if at:
        return f"{local.casefold()}@{_ascii_domain(domain)}"
    return text.casefold()


#: `_ascii_domain` by domain: the IDNA codec takes about 20 µs a name, and People share domains.
_ASCII_DOMAINS: dict[str, str] = {}
_ASCII_DOMAINS_REMEMBERED = 10_000


def _ascii_domain(domain: str) -> str:
    """The domain in ASCII (punycode) and lower case; as given, lower-cased, if IDNA refuses it."""
    found = _ASCII_DOMAINS.get(domain)
    if found is None:
        found = domain
        with contextlib.suppress(UnicodeError):
            found = domain.encode("idna").decode("ascii")
        found = found.lower()
        if len(_ASCII_DOMAINS) >= _ASCII_DOMAINS_REMEMBERED:
            _ASCII_DOMAINS.clear()
        _ASCII_DOMAINS[domain] = found
    return found


def address_key(address: str) -> str:
    """The cache key of an address (hex sha256 of salt + normalized address)."""
    return hashlib.sha256(
        KEY_SALT + normalize_address(address).encode("utf-8", "surrogatepass")
    ).hexdigest()


class ResultsCache(Protocol):
    def get(self, key: str) -> Verdict | None: ...
    def prefetch(self, keys: Sequence[str], bounces: Sequence[str] = ()) -> None: ...
    def put(self, key: str, verdict: Verdict) -> None: ...
    def add_bounce(self, key: str) -> None: ...
    def is_bounce(self, key: str) -> bool: ...
    def has_bounces(self) -> bool: ...
    def commit(self) -> None: ...
    def close(self) -> None: ...


class SqliteResultsCache:
    """`cache_path`: WAL mode, batched commits, safe from the reader and the engine thread.

    The file is an optimisation, never a reason to stop a run. A damaged file (found at open or by
    any later read or write) is moved aside to `<cache_path>.corrupt-<UTC time>` and a new one takes
    its place; a file that stops taking writes (a full disk, an I/O error, a lock held past
    `busy_timeout`) is only read from then on, and this run's verdicts stay in memory. Each says so
    in one WARNING naming `cache_path`. Several runs may open one new file at once.
    """

    def __init__(
        self,
        path: str | Path,
        ttl_days: float,
        transient_hours: float = DEFAULT_TRANSIENT_HOURS,
        *,
        logger: logging.Logger | None = None,
        busy_timeout: float = 30.0,
    ) -> None:
        self.ttl = float(ttl_days) * DAY
        self.transient_ttl = float(transient_hours) * HOUR
        self.path = Path(path).expanduser()
        self.logger = logger or logging.getLogger(__name__)
        self.busy_timeout = busy_timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        #: This run's writes once the file takes none (read first, then the file).
        self._memory = MemoryResultsCache(ttl_days, transient_hours)
        self._writable = True
        self._replaced = False  # a damaged file is replaced once; a second one: memory only
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file opened
        self._pending: list[tuple[str, Verdict | None]] = []  # writes since the last commit
        #: The rows (None: no row) and bounces `prefetch` read last; a write forgets its key.
        self._fetched: dict[str, tuple[str, str, float] | None] = {}
        self._fetched_bounces: dict[str, bool] = {}
        self._uncommitted = 0
        self._last_commit = time.monotonic()
        self._db: sqlite3.Connection | None = None
        try:
            self._db = self._connect()
        except sqlite3.Error as exc:
            kind = failure_kind(exc)
            if kind == "damaged":
                self._replace_damaged(exc)
            elif kind == "unwritable":
                self._stop_writing(exc)
            else:
                raise

    # -- the interface ---------------------------------------------------------------------------

    def get(self, key: str) -> Verdict | None:
        with self._lock:
            db = self._db
            if db is None or not self._writable:
                verdict = self._memory.get(key)
                if verdict is not None or db is None or self._memory.is_bounce(key):
                    return verdict
            row = self._fetched.pop(key, _UNFETCHED)
            if row is _UNFETCHED:
                try:
                    row = db.execute(
                        "SELECT status, substatus, validated_at FROM results WHERE key = ?", (key,)
                    ).fetchone()
                except sqlite3.Error as exc:  # locked by another run, or damaged: verify instead
                    self._failed(exc, writing=False)
                    return None
        if (
            row is None
            or row[2] + lifetime(row[0], row[1], self.ttl, self.transient_ttl) < time.time()
        ):
            return None
        return Verdict(*row)

    def prefetch(self, keys: Sequence[str], bounces: Sequence[str] = ()) -> None:
        """Read the rows of `keys` (and whether `bounces` bounced) in a few queries, for the next
        `get` / `is_bounce` of each: one query for many keys costs about what one costs alone.

        Only the last call's keys are kept; a write to a key (a verdict, a bounce) forgets it, so
        an answer from here is what the file would give now (as far as this run wrote it).
        """
        with self._lock:
            self._fetched, self._fetched_bounces = {}, {}
            db = self._db
            if db is None:
                return
            try:
                if keys:
                    self._fetched = self._rows(db, keys)
                if bounces:
                    known = self._bounced(db, bounces)
                    self._fetched_bounces = {key: key in known for key in bounces}
            except sqlite3.Error as exc:  # as in `get`: each key is then asked on its own
                self._fetched, self._fetched_bounces = {}, {}
                self._failed(exc, writing=False)

    @staticmethod
    def _rows(
        db: sqlite3.Connection, keys: Sequence[str]
    ) -> dict[str, tuple[str, str, float] | None]:
        found: dict[str, tuple[str, str, float] | None] = dict.fromkeys(keys)
        for start in range(0, len(keys), _PREFETCH_KEYS):
            some = keys[start : start + _PREFETCH_KEYS]
            marks = ",".join("?" * len(some))
            rows = db.execute(
                f"SELECT key, status, substatus, validated_at FROM results WHERE key IN ({marks})",
                some,
            ).fetchall()
            found.update({row[0]: row[1:] for row in rows})
        return found

    @staticmethod
    def _bounced(db: sqlite3.Connection, keys: Sequence[str]) -> set[str]:
        known: set[str] = set()
        for start in range(0, len(keys), _PREFETCH_KEYS):
            some = keys[start : start + _PREFETCH_KEYS]
            marks = ",".join("?" * len(some))
            known.update(
                key
                for (key,) in db.execute(f"SELECT key FROM bounces WHERE key IN ({marks})", some)
            )
        return known

    def put(self, key: str, verdict: Verdict) -> None:
        with self._lock:
            self._write(key, verdict)

    def add_bounce(self, key: str) -> None:
        """A hard bounce also voids any verdict cached before it was known."""
        with self._lock:
            self._write(key, None)

    def is_bounce(self, key: str) -> bool:
        with self._lock:
            db = self._db
            if (db is None or not self._writable) and self._memory.is_bounce(key):
                return True
            if db is None:
                return False
            fetched = self._fetched_bounces.get(key)
            if fetched is not None:
                return fetched
            try:
                return (
                    db.execute("SELECT 1 FROM bounces WHERE key = ?", (key,)).fetchone() is not None
                )
            except sqlite3.Error as exc:
                self._failed(exc, writing=False)
                return False

    def has_bounces(self) -> bool:
        with self._lock:
            if self._memory.has_bounces():
                return True
            if self._db is None:
                return False
            try:
                row = self._db.execute("SELECT EXISTS (SELECT 1 FROM bounces)").fetchone()
            except sqlite3.Error as exc:
                self._failed(exc, writing=False)
                return False
            return bool(row[0])

    def commit(self) -> None:
        with self._lock:
            if self._uncommitted:
                self._commit()
            self._last_commit = time.monotonic()

    def close(self) -> None:
        with self._lock:
            if self._uncommitted:
                self._commit()
            db, self._db = self._db, None
            if db is not None:
                with contextlib.suppress(sqlite3.Error):
                    db.close()

    # -- writing ---------------------------------------------------------------------------------

    def _write(self, key: str, verdict: Verdict | None) -> None:
        """Under the lock: a verdict, or a bounce when `verdict` is None."""
        self._fetched.pop(key, None)
        self._fetched_bounces.pop(key, None)
        db = self._db
        if db is None or not self._writable:
            if verdict is None:
                self._memory.add_bounce(key)
            else:
                self._memory.put(key, verdict)
            return
        self._pending.append((key, verdict))
        try:
            if verdict is None:
                db.execute("INSERT OR REPLACE INTO bounces VALUES (?, ?)", (key, time.time()))
                db.execute(
                    "DELETE FROM results WHERE key = ? AND substatus != 'hard_bounce_history'",
                    (key,),
                )
            else:
                # A verdict reached before the address's bounce record arrived (same run) must not
                # outlive it.
                db.execute(
                    "INSERT OR REPLACE INTO results SELECT ?, ?, ?, ? "
                    "WHERE ? = 'hard_bounce_history' "
                    "OR NOT EXISTS (SELECT 1 FROM bounces WHERE key = ?)",
                    (key, *verdict, verdict.substatus, key),
                )
        except sqlite3.Error as exc:
            self._failed(exc, writing=True)
            return
        self._uncommitted += 1
        if (
            self._uncommitted >= _COMMIT_EVERY
            or time.monotonic() - self._last_commit > _COMMIT_SECONDS
        ):
            self._commit()
            self._last_commit = time.monotonic()

    def _commit(self) -> None:
        db = self._db
        if db is None or not self._writable:
            return
        try:
            db.commit()
        except sqlite3.Error as exc:
            self._failed(exc, writing=True)
            return
        self._uncommitted = 0
        self._pending.clear()

    # -- failures --------------------------------------------------------------------------------

    def _failed(self, exc: sqlite3.Error, *, writing: bool) -> None:
        """Under the lock. A failed read is a cache miss; a damaged file is replaced; a failed
        write turns the file read-only for the rest of the run."""
        kind = failure_kind(exc)
        if kind == "damaged":
            self._replace_damaged(exc)
        elif writing:
            self._stop_writing(exc)

    def _stop_writing(self, exc: sqlite3.Error) -> None:
        self._fetched, self._fetched_bounces = {}, {}  # may hold writes the rollback undoes
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.rollback()
        self._writable = False
        pending, self._pending = self._pending, []
        self._uncommitted = 0
        for key, verdict in pending:  # lost with the transaction: kept in memory instead
            self._write(key, verdict)
        self.logger.warning(
            "cache_path %s cannot be written (%s): this run keeps its new verdicts in memory only, "
            "so the next run verifies those addresses again; free space on its disk or point "
            "cache_path elsewhere.",
            self.path,
            brief(exc),
        )

    def _replace_damaged(self, exc: sqlite3.Error) -> None:
        """Move the damaged file aside and start a new one (once per run; after that, or when the
        file cannot be moved, this run goes on with memory only)."""
        db, self._db = self._db, None
        self._fetched, self._fetched_bounces = {}, {}  # read from the damaged file
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()
        pending, self._pending = self._pending, []
        self._uncommitted = 0
        without = "this run goes on without a cache file"
        if self._replaced:
            where, outcome = "left it in place", without
        else:
            self._replaced = True
            try:
                aside = self._move_aside()
            except OSError as move_error:
                where, outcome = f"could not move it aside ({move_error.strerror})", without
            else:
                where = f"moved it to {aside}" if aside else "another run moved it aside already"
                try:
                    self._db = self._connect()
                except sqlite3.Error as reopen_error:
                    outcome = f"a new file could not be made ({brief(reopen_error)}); {without}"
                else:
                    self._writable = True
                    outcome = "a new file takes its place"
        self.logger.warning(
            "cache_path %s is damaged (%s): %s and %s; the verdicts it held are checked again.",
            self.path,
            brief(exc),
            where,
            outcome,
        )
        for key, verdict in pending:  # written since the last commit: into the new file or memory
            self._write(key, verdict)

    def _move_aside(self) -> Path | None:
        """Rename the file (and its -wal/-shm/-journal) to `<name>.corrupt-<UTC time>`; None when
        the file at `path` is no longer the one opened (another run moved it aside already)."""
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return None
        if self._identity is not None and (status.st_dev, status.st_ino) != self._identity:
            return None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        serial = 1
        while aside.exists():
            serial += 1
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{serial}")
        os.replace(self.path, aside)
        for suffix in ("-wal", "-shm", "-journal"):
            side = self.path.with_name(self.path.name + suffix)
            with contextlib.suppress(FileNotFoundError):
                os.replace(side, aside.with_name(aside.name + suffix))
        return aside

    # -- opening ---------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout,
            check_same_thread=False,
            isolation_level="DEFERRED",
        )
        try:
            # Another run setting up the same new file makes the journal-mode switch answer
            # "database is locked" at once (SQLite calls no busy handler there): retry.
            self._patiently(lambda: db.execute("PRAGMA journal_mode=WAL").fetchone())
            db.execute("PRAGMA synchronous=NORMAL")
            self._patiently(lambda: db.executescript(_TABLES))
            db.commit()
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.close()
            raise
        status = os.stat(self.path)
        self._identity = (status.st_dev, status.st_ino)
        return db

    def _patiently(self, step: Callable[[], object]) -> None:
        while_busy(step, self.busy_timeout)


_TABLES = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY, status TEXT NOT NULL, substatus TEXT NOT NULL,
    validated_at REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bounces (
    key TEXT PRIMARY KEY, seen_at REAL NOT NULL) WITHOUT ROWID;
"""


def while_busy(step: Callable[[], object], timeout: float) -> None:
    """Run `step`, again while another connection holds the file (up to `timeout` seconds).

    Another run setting up the same new file makes the journal-mode switch answer "database is
    locked" at once (SQLite calls no busy handler there).
    """
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            if failure_kind(exc) != "busy" or time.monotonic() >= deadline:
                raise
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.25)


def failure_kind(exc: sqlite3.Error) -> str:
    """`damaged` (not a database, a malformed page), `busy` (another connection holds a lock),
    `unwritable` (full disk, I/O error, read-only file) or `other`."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return "damaged"
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return "busy"
    if primary in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY):
        return "unwritable"
    if primary is None:
        text = str(exc).lower()
        if "malformed" in text or "not a database" in text:
            return "damaged"
        if "locked" in text or "busy" in text:
            return "busy"
        if "full" in text or "i/o error" in text or "readonly" in text:
            return "unwritable"
    return "other"


def brief(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:120] or type(exc).__name__


class MemoryResultsCache:
    """No `cache_path`: a bounded LRU for this run only (duplicates within the run cost nothing)."""

    def __init__(
        self,
        ttl_days: float,
        transient_hours: float = DEFAULT_TRANSIENT_HOURS,
        max_entries: int = 200_000,
    ) -> None:
        self.ttl = float(ttl_days) * DAY
        self.transient_ttl = float(transient_hours) * HOUR
        self.max_entries = max_entries
        self._results: OrderedDict[str, Verdict] = OrderedDict()
        self._bounces: set[str] = set()
        self._lock = threading.Lock()

    def get(self, key: str) -> Verdict | None:
        with self._lock:
            verdict = self._results.get(key)
            if verdict is not None:
                self._results.move_to_end(key)
        if (
            verdict is None
            or verdict.validated_at
            + lifetime(verdict.status, verdict.substatus, self.ttl, self.transient_ttl)
            < time.time()
        ):
            return None
        return verdict

    def prefetch(self, keys: Sequence[str], bounces: Sequence[str] = ()) -> None:
        """Nothing to read ahead: every answer is in memory."""

    def put(self, key: str, verdict: Verdict) -> None:
        with self._lock:
            if key in self._bounces and verdict.substatus != "hard_bounce_history":
                return
            self._results[key] = verdict
            self._results.move_to_end(key)
            while len(self._results) > self.max_entries:
                self._results.popitem(last=False)

    def add_bounce(self, key: str) -> None:
        with self._lock:
            self._bounces.add(key)
            verdict = self._results.get(key)
            if verdict is not None and verdict.substatus != "hard_bounce_history":
                del self._results[key]

    def is_bounce(self, key: str) -> bool:
        return key in self._bounces

    def has_bounces(self) -> bool:
        return bool(self._bounces)

    def commit(self) -> None:
        pass

    def close(self) -> None:
        pass
