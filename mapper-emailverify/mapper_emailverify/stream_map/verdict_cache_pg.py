"""`cache_url`: the verdict cache in PostgreSQL, shared by several workers.

Same keys (salted hashes, never an address), same TTLs and transient verdicts as
`SqliteResultsCache`: the two differ only in where rows live. Imported only when `cache_url` is set,
so a SQLite or in-memory run never loads psycopg.

Writes are kept in this process and sent in one short transaction every `_COMMIT_SECONDS` or
`_COMMIT_EVERY` writes (the mapper's ticker calls `commit`), so no transaction or lock is held
while the verifier talks to a mail server. Upserts keep the newer verdict, so two workers writing
one key lose nothing. A database that cannot be used at start is a configuration error
(`ConfigError`, one line, the password shown as ***): a typo in the URL or a wrong password stops
the run instead of running it without its cache. A database lost mid-run is reported in one WARNING
and the run goes on with memory only, as a SQLite file that stops taking writes does.

`CacheUrl` is what the stores on one `cache_url` share (this cache and the domain knowledge of
`domain_cache_pg`): the redacted URL, the connection settings, the one WARNING of a run and whether
the database was lost, so that after a loss no store dials it again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors

from mapper_emailverify.engine.errors import ConfigError
from mapper_emailverify.stream_map.settings import DAY, HOUR
from mapper_emailverify.stream_map.verdict_cache import (
    _COMMIT_EVERY,
    _COMMIT_SECONDS,
    DEFAULT_TRANSIENT_HOURS,
    MemoryResultsCache,
    Verdict,
    lifetime,
)

#: Keys per prefetch query (`= ANY(array)`: one parameter whatever the count).
_PREFETCH_KEYS = 2000
#: A transaction aborted by a deadlock or a serialization failure is tried again this often.
_TRIES = 3
#: Held while creating the tables, so workers starting together do not race in the catalog.
_SETUP_LOCK = 0x6D61_7070_6576  # "mappev"

_TABLES = (
    "CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, status TEXT NOT NULL, "
    "substatus TEXT NOT NULL, validated_at DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS bounces (key TEXT PRIMARY KEY, seen_at DOUBLE PRECISION NOT NULL)",
)
# The newer verdict wins, whichever worker commits last; a bounce voids older verdicts (as in
# SQLite, a verdict is not stored for a bounced key unless it says so).
_PUT = (
    "INSERT INTO results (key, status, substatus, validated_at) SELECT %s, %s, %s, %s "
    "WHERE %s = 'hard_bounce_history' OR NOT EXISTS (SELECT 1 FROM bounces WHERE key = %s) "
    "ON CONFLICT (key) DO UPDATE SET status = EXCLUDED.status, substatus = EXCLUDED.substatus, "
    "validated_at = EXCLUDED.validated_at WHERE results.validated_at <= EXCLUDED.validated_at"
)
_BOUNCE = (
    "INSERT INTO bounces (key, seen_at) VALUES (%s, %s) "
    "ON CONFLICT (key) DO UPDATE SET seen_at = GREATEST(bounces.seen_at, EXCLUDED.seen_at)"
)
_UNBOUNCED = "DELETE FROM results WHERE key = %s AND substatus <> 'hard_bounce_history'"


def redacted(url: str) -> str:
    """`url` with its password replaced by ***, for logs and errors."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{parts.username or ''}:***@{host}"
        if parts.port is not None:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<cache_url>"


def reason(exc: BaseException) -> str:
    """What a psycopg failure says, without the words around it: `Connection refused`,
    `password authentication failed for user "ev"`, `database "x" does not exist` ..."""
    text = str(exc).strip().split("\n", 1)[0].rsplit(" failed: ", 1)[-1]
    return " ".join(text.removeprefix("FATAL:").split())[:120] or type(exc).__name__


class CacheUrl:
    """One run's `cache_url`, shared by the stores that keep their rows there: how to connect,
    how it is shown (the password as ***), and whether the database was lost. The first store that
    loses it says so in one WARNING; from then on `down` is true and no store dials it again."""

    def __init__(self, url: str, logger: logging.Logger | None = None) -> None:
        self.url = url
        self.shown = redacted(url)
        self.logger = logger or logging.getLogger(__name__)
        self.down = False
        self._secrets = _password(url)
        self._lock = threading.Lock()

    def connect(
        self,
        tables: Sequence[str],
        *,
        connect_timeout: float,
        statement_timeout: float,
        give_up_after: float | None = None,
    ) -> psycopg.Connection[tuple[Any, ...]]:
        """An autocommit connection whose statements end after `statement_timeout` (server side)
        and whose unacknowledged writes after `give_up_after` (default twice that), with `tables`
        created first under an advisory lock (workers starting together do not race)."""
        db = psycopg.connect(
            self.url, **connect_options(connect_timeout, statement_timeout, give_up_after)
        )
        try:
            if tables:
                with db.transaction():
                    db.execute("SELECT pg_advisory_xact_lock(%s)", (_SETUP_LOCK,))
                    for statement in tables:
                        db.execute(statement)
        except BaseException:
            with contextlib.suppress(Exception):
                db.close()
            raise
        return db

    def unusable(self, exc: BaseException) -> ConfigError:
        """The one line that stops a run whose database cannot be used at start."""
        return ConfigError(
            f"cache_url {self.shown} cannot be used ({self.scrub(reason(exc))}): check the URL, "
            "that the server is up and the password, or remove cache_url."
        )

    def lost(self, exc: BaseException | None) -> None:
        """The database cannot be used any more: said once per run (None says nothing)."""
        with self._lock:
            first, self.down = not self.down, True
        if first and exc is not None:
            self.logger.warning(
                "cache_url %s cannot be used (%s): this run goes on without the shared cache, "
                "keeps its new verdicts and domain knowledge in memory only and holds each mail "
                "host to its own caps (other workers on its egress IP may add to them); check "
                "that the database is up and reachable from this worker.",
                self.shown,
                self.scrub(reason(exc)),
            )

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def connect_options(
    connect_timeout: float, statement_timeout: float, give_up_after: float | None = None
) -> dict[str, Any]:
    """The keyword arguments of `psycopg.connect` (or `AsyncConnection.connect`) for a `cache_url`
    store: autocommit, bounded connect and statements, TCP keepalives, and unacknowledged writes
    given up after `give_up_after` (default twice `statement_timeout`)."""
    give_up = 2 * statement_timeout if give_up_after is None else give_up_after
    return {
        "autocommit": True,
        "connect_timeout": max(1, round(connect_timeout)),
        "options": f"-c statement_timeout={round(statement_timeout * 1000)}",
        "application_name": "mapper-emailverify",
        # A peer that vanishes (no RST) is noticed in about half a minute, not hours.
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": round(give_up * 1000),
    }


def in_one_transaction(
    db: psycopg.Connection[Any], statements: Sequence[tuple[str, Sequence[object]]]
) -> bool:
    """`statements` in one short pipelined transaction, tried again on a deadlock or a
    serialization failure; False when it kept failing so (other errors are raised). Callers sort
    their rows by key, so that two workers lock them in one order."""
    for attempt in range(_TRIES):
        try:
            with db.transaction(), db.pipeline():
                cursor = db.cursor()
                for sql, params in statements:
                    cursor.execute(sql, params)
            return True
        except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure):
            if attempt + 1 < _TRIES:
                time.sleep(0.05 * (attempt + 1))
    return False


class PostgresResultsCache:
    """The `ResultsCache` protocol over PostgreSQL (psycopg 3, one autocommit connection).

    `url` is the `cache_url`, or a `CacheUrl` shared with the run's other stores. Raises
    `ConfigError` when the database cannot be used at start (see the module docstring)."""

    def __init__(
        self,
        url: str | CacheUrl,
        ttl_days: float,
        transient_hours: float = DEFAULT_TRANSIENT_HOURS,
        *,
        logger: logging.Logger | None = None,
        connect_timeout: float = 10.0,
        statement_timeout: float = 15.0,
    ) -> None:
        self.ttl = float(ttl_days) * DAY
        self.transient_ttl = float(transient_hours) * HOUR
        self.link = url if isinstance(url, CacheUrl) else CacheUrl(url, logger)
        self.url = self.link.url
        self.shown = self.link.shown
        self.logger = self.link.logger
        self._days = (float(ttl_days), float(transient_hours))
        self._lock = threading.Lock()
        #: Writes not yet sent (in order), and the same writes as answers for this run's reads.
        self._pending: list[tuple[str, Verdict | None]] = []
        self._unsent = MemoryResultsCache(ttl_days, transient_hours)
        #: Everything once the database is lost.
        self._memory = MemoryResultsCache(ttl_days, transient_hours)
        self._fetched: dict[str, tuple[str, str, float] | None] = {}
        self._fetched_bounces: dict[str, bool] = {}
        self._last_commit = time.monotonic()
        self._db: psycopg.Connection[tuple[object, ...]] | None = None
        try:
            self._db = self.link.connect(
                _TABLES, connect_timeout=connect_timeout, statement_timeout=statement_timeout
            )
        except psycopg.Error as exc:
            raise self.link.unusable(exc) from None

    # -- the interface ---------------------------------------------------------------------------

    def get(self, key: str) -> Verdict | None:
        with self._lock:
            if not self._online():
                return self._memory.get(key)
            verdict = self._unsent.get(key)
            if verdict is not None:
                return verdict
            row = self._fetched.pop(key, None) if key in self._fetched else self._read(key)
            if row is None or (self._unsent.is_bounce(key) and row[1] != "hard_bounce_history"):
                return None
        if row[2] + lifetime(row[0], row[1], self.ttl, self.transient_ttl) < time.time():
            return None
        return Verdict(*row)

    def prefetch(self, keys: Sequence[str], bounces: Sequence[str] = ()) -> None:
        """Read the rows of `keys` (and whether `bounces` bounced) in a few queries, for the next
        `get` / `is_bounce` of each (one round trip for many keys instead of one each)."""
        with self._lock:
            self._fetched, self._fetched_bounces = {}, {}
            db = self._db if self._online() else None
            if db is None:
                return
            try:
                fetched: dict[str, tuple[str, str, float] | None] = dict.fromkeys(keys)
                for start in range(0, len(keys), _PREFETCH_KEYS):
                    rows = db.execute(
                        "SELECT key, status, substatus, validated_at FROM results "
                        "WHERE key = ANY(%s)",
                        (list(keys[start : start + _PREFETCH_KEYS]),),
                    ).fetchall()
                    fetched.update({str(r[0]): (str(r[1]), str(r[2]), float(r[3])) for r in rows})  # type: ignore[arg-type]
                known: set[str] = set()
                for start in range(0, len(bounces), _PREFETCH_KEYS):
                    known.update(
                        str(row[0])
                        for row in db.execute(
                            "SELECT key FROM bounces WHERE key = ANY(%s)",
                            (list(bounces[start : start + _PREFETCH_KEYS]),),
                        )
                    )
            except pg_errors.QueryCanceled:  # slow today: each key is asked on its own
                return
            except psycopg.Error as exc:
                self._lost(exc)
                return
            self._fetched = fetched
            self._fetched_bounces = {key: key in known for key in bounces}

    def put(self, key: str, verdict: Verdict) -> None:
        with self._lock:
            self._write(key, verdict)

    def add_bounce(self, key: str) -> None:
        """A hard bounce also voids any verdict cached before it was known."""
        with self._lock:
            self._write(key, None)

    def is_bounce(self, key: str) -> bool:
        with self._lock:
            if not self._online():
                return self._memory.is_bounce(key)
            if self._unsent.is_bounce(key):
                return True
            fetched = self._fetched_bounces.get(key)
            if fetched is not None:
                return fetched
            return self._query_flag("SELECT 1 FROM bounces WHERE key = %s", (key,))

    def has_bounces(self) -> bool:
        with self._lock:
            if not self._online():
                return self._memory.has_bounces()
            if self._unsent.has_bounces():
                return True
            return self._query_flag("SELECT 1 FROM bounces LIMIT 1", ())

    def commit(self) -> None:
        with self._lock:
            self._send()

    def close(self) -> None:
        with self._lock:
            self._send()
            db, self._db = self._db, None
            if db is not None:
                with contextlib.suppress(psycopg.Error):
                    db.close()

    # -- reading ---------------------------------------------------------------------------------

    def _read(self, key: str) -> tuple[str, str, float] | None:
        """Under the lock, with a database: the row of `key`; None also when it cannot be read."""
        assert self._db is not None
        try:
            row = self._db.execute(
                "SELECT status, substatus, validated_at FROM results WHERE key = %s", (key,)
            ).fetchone()
        except pg_errors.QueryCanceled:
            return None
        except psycopg.Error as exc:
            self._lost(exc)
            return None
        return None if row is None else (str(row[0]), str(row[1]), float(row[2]))  # type: ignore[arg-type]

    def _query_flag(self, query: str, params: tuple[str, ...]) -> bool:
        assert self._db is not None
        try:
            return self._db.execute(query, params).fetchone() is not None
        except pg_errors.QueryCanceled:
            return False
        except psycopg.Error as exc:
            self._lost(exc)
            return self._memory.is_bounce(params[0]) if params else self._memory.has_bounces()

    # -- writing ---------------------------------------------------------------------------------

    def _write(self, key: str, verdict: Verdict | None) -> None:
        """Under the lock: a verdict, or a bounce when `verdict` is None."""
        self._fetched.pop(key, None)
        self._fetched_bounces.pop(key, None)
        target = self._unsent if self._online() else self._memory
        if verdict is None:
            target.add_bounce(key)
        else:
            target.put(key, verdict)
        if self._db is None:
            return
        self._pending.append((key, verdict))
        if (
            len(self._pending) >= _COMMIT_EVERY
            or time.monotonic() - self._last_commit > _COMMIT_SECONDS
        ):
            self._send()

    def _send(self) -> None:
        """Under the lock: the pending writes in one short transaction (sorted by key, so two
        workers lock rows in one order; a deadlock or serialization failure is tried again)."""
        self._last_commit = time.monotonic()
        db = self._db if self._online() else None
        if db is None or not self._pending:
            return
        now = time.time()
        statements: list[tuple[str, Sequence[object]]] = []
        for key, verdict in sorted(self._pending, key=lambda item: item[0]):  # stable
            if verdict is None:
                statements += [(_BOUNCE, (key, now)), (_UNBOUNCED, (key,))]
            else:
                statements.append((_PUT, (key, *verdict, verdict.substatus, key)))
        try:
            sent = in_one_transaction(db, statements)
        except psycopg.Error as exc:
            self._lost(exc)
            return
        if not sent:
            self._lost_writes()
            return
        self._pending.clear()
        self._unsent = MemoryResultsCache(*self._days)

    # -- failures --------------------------------------------------------------------------------

    def _lost_writes(self) -> None:
        """A batch that kept deadlocking: its verdicts stay in memory for this run."""
        for key, verdict in self._pending:
            if verdict is None:
                self._memory.add_bounce(key)
            else:
                self._memory.put(key, verdict)
        self._pending.clear()

    def _online(self) -> bool:
        """Under the lock: whether the database is still used (another store may have lost it)."""
        if self._db is not None and self.link.down:
            self._lost(None)
        return self._db is not None

    def _lost(self, exc: BaseException | None) -> None:
        """Under the lock: the database cannot be used; said once per run (by `CacheUrl`), and
        memory only from now on."""
        db, self._db = self._db, None
        self._fetched, self._fetched_bounces = {}, {}
        if db is not None:
            with contextlib.suppress(Exception):
                db.close()
        self._lost_writes()  # this run's unsent verdicts stay usable
        self._unsent = MemoryResultsCache(*self._days)
        self.link.lost(exc)


def _password(url: str) -> tuple[str, ...]:
    """The password of `url` as written and decoded (both must never reach a log line)."""
    with contextlib.suppress(ValueError):
        password = urlsplit(url).password
        if password:
            return tuple({password, unquote(password)})
    return ()
