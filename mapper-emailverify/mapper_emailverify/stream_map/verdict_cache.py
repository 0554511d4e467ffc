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
import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple, Protocol

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
        with contextlib.suppress(UnicodeError):
            domain = domain.encode("idna").decode("ascii")
        return f"{local.casefold()}@{domain.lower()}"
    return text.casefold()


def address_key(address: str) -> str:
    """The cache key of an address (hex sha256 of salt + normalized address)."""
    return hashlib.sha256(
        KEY_SALT + normalize_address(address).encode("utf-8", "surrogatepass")
    ).hexdigest()


class ResultsCache(Protocol):
    def get(self, key: str) -> Verdict | None: ...
    def put(self, key: str, verdict: Verdict) -> None: ...
    def add_bounce(self, key: str) -> None: ...
    def is_bounce(self, key: str) -> bool: ...
    def has_bounces(self) -> bool: ...
    def commit(self) -> None: ...
    def close(self) -> None: ...


class SqliteResultsCache:
    """`cache_path`: WAL mode, batched commits, safe from the reader and the engine thread."""

    def __init__(
        self, path: str | Path, ttl_days: float, transient_hours: float = DEFAULT_TRANSIENT_HOURS
    ) -> None:
        self.ttl = float(ttl_days) * DAY
        self.transient_ttl = float(transient_hours) * HOUR
        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            path, timeout=30, check_same_thread=False, isolation_level="DEFERRED"
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS results (
                key TEXT PRIMARY KEY, status TEXT NOT NULL, substatus TEXT NOT NULL,
                validated_at REAL NOT NULL) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS bounces (
                key TEXT PRIMARY KEY, seen_at REAL NOT NULL) WITHOUT ROWID;
            """
        )
        self._db.commit()
        self._uncommitted = 0
        self._last_commit = time.monotonic()

    def get(self, key: str) -> Verdict | None:
        try:
            with self._lock:
                row = self._db.execute(
                    "SELECT status, substatus, validated_at FROM results WHERE key = ?", (key,)
                ).fetchone()
        except sqlite3.OperationalError:  # locked by another run sharing the file: verify instead
            return None
        if (
            row is None
            or row[2] + lifetime(row[0], row[1], self.ttl, self.transient_ttl) < time.time()
        ):
            return None
        return Verdict(*row)

    def put(self, key: str, verdict: Verdict) -> None:
        # A verdict reached before the address's bounce record arrived (same run) must not outlive
        # it.
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO results SELECT ?, ?, ?, ? WHERE ? = 'hard_bounce_history' "
                "OR NOT EXISTS (SELECT 1 FROM bounces WHERE key = ?)",
                (key, *verdict, verdict.substatus, key),
            )
            self._written()

    def add_bounce(self, key: str) -> None:
        """A hard bounce also voids any verdict cached before it was known."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO bounces VALUES (?, ?)", (key, time.time()))
            self._db.execute(
                "DELETE FROM results WHERE key = ? AND substatus != 'hard_bounce_history'", (key,)
            )
            self._written()

    def is_bounce(self, key: str) -> bool:
        try:
            with self._lock:
                return (
                    self._db.execute("SELECT 1 FROM bounces WHERE key = ?", (key,)).fetchone()
                    is not None
                )
        except sqlite3.OperationalError:
            return False

    def has_bounces(self) -> bool:
        with self._lock:
            row = self._db.execute("SELECT EXISTS (SELECT 1 FROM bounces)").fetchone()
            return bool(row[0])

    def commit(self) -> None:
        with self._lock:
            if self._uncommitted:
                self._db.commit()
                self._uncommitted = 0
            self._last_commit = time.monotonic()

    def close(self) -> None:
        with self._lock:
            self._db.commit()
            self._db.close()

    def _written(self) -> None:
        self._uncommitted += 1
        if (
            self._uncommitted >= _COMMIT_EVERY
            or time.monotonic() - self._last_commit > _COMMIT_SECONDS
        ):
            self._db.commit()
            self._uncommitted = 0
            self._last_commit = time.monotonic()


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


def open_cache(
    path: str | None, ttl_days: float, transient_hours: float = DEFAULT_TRANSIENT_HOURS
) -> ResultsCache:
    if path:
        return SqliteResultsCache(path, ttl_days, transient_hours)
    return MemoryResultsCache(ttl_days, transient_hours)
