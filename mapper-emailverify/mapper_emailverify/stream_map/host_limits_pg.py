"""`cache_url`: each mail host's caps shared by the workers that probe from one egress IP.

The engine's `SharedHostLimits` (`engine/host_limits.py`) in the shared cache's database:

    ev_host_slots(egress, host, slot, holder, expires_at)   one row per session slot of a host
    ev_host_rates(egress, host, tat, paused_until)          when the host's next recipient is due

`egress` is the `egress_ip` setting (empty for workers that did not set one): workers with the
same value share `max_connections_per_mx` and `max_rcpt_per_minute_per_mx` per mail host, workers
on other egress IPs keep their own. `host` is the mail server's IP (not personal data).

Every call is one autocommit statement, so no lock outlives it and none is held while a mail
server talks. A slot is a lease that its worker renews while it runs: a worker that dies frees its
slots within `LEASE_SECONDS`. The rate is the prober's GCRA booked in one `UPSERT ... RETURNING`
on the database's clock, the one clock all workers share. A database that fails (or answers
slower than `_OP_TIMEOUT`) gets the run's one WARNING about `cache_url` (`CacheUrl`, shared with
the caches); this worker then keeps its own caps for the rest of the run, as it would without
`cache_url`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg

from mapper_emailverify.stream_map.verdict_cache_pg import _SETUP_LOCK, CacheUrl, connect_options

#: A slot not renewed for this long is free again (its worker died or lost the database).
LEASE_SECONDS = 60.0
#: The first and the longest pause between two tries for a slot of a busy host.
_POLL_FIRST, _POLL_LAST = 0.02, 0.5
#: A statement slower than this counts as a lost database (the prober must not hang on it).
_OP_TIMEOUT = 5.0
#: Rows of hosts nobody talked to for this long are deleted when a worker connects.
_FORGET_AFTER = "7 days"

_TABLES = (
    "CREATE TABLE IF NOT EXISTS ev_host_slots (egress TEXT NOT NULL, host TEXT NOT NULL, "
    "slot INTEGER NOT NULL, holder TEXT NOT NULL, expires_at TIMESTAMPTZ NOT NULL, "
    "PRIMARY KEY (egress, host, slot))",
    "CREATE TABLE IF NOT EXISTS ev_host_rates (egress TEXT NOT NULL, host TEXT NOT NULL, "
    "tat TIMESTAMPTZ NOT NULL, paused_until TIMESTAMPTZ NOT NULL DEFAULT '-infinity', "
    "PRIMARY KEY (egress, host))",
)
_FORGET = (
    f"DELETE FROM ev_host_slots WHERE expires_at < now() - interval '{_FORGET_AFTER}'",
    f"DELETE FROM ev_host_rates WHERE tat < now() - interval '{_FORGET_AFTER}'",
)
# The lowest slot number below `cap` that no live lease holds; a slot a concurrent worker just
# took is left alone (its fresh lease fails the WHERE), and the caller tries again.
_TAKE = """
WITH free AS (
    SELECT s.n FROM generate_series(0, %(cap)s - 1) AS s(n)
    WHERE NOT EXISTS (
        SELECT 1 FROM ev_host_slots h WHERE h.egress = %(egress)s AND h.host = %(host)s
        AND h.slot = s.n AND h.expires_at > clock_timestamp())
    ORDER BY s.n LIMIT 1)
INSERT INTO ev_host_slots AS h (egress, host, slot, holder, expires_at)
SELECT %(egress)s, %(host)s, n, %(holder)s, clock_timestamp() + make_interval(secs => %(lease)s)
FROM free
ON CONFLICT (egress, host, slot) DO UPDATE
SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
WHERE h.expires_at <= clock_timestamp()
RETURNING slot
"""
_GIVE = "DELETE FROM ev_host_slots WHERE egress = %s AND host = %s AND slot = %s AND holder = %s"
_RENEW = (
    "UPDATE ev_host_slots SET expires_at = clock_timestamp() + make_interval(secs => %s) "
    "WHERE holder = %s"
)
_GIVE_ALL = "DELETE FROM ev_host_slots WHERE holder = ANY(%s)"
_BOOK = """
INSERT INTO ev_host_rates AS r (egress, host, tat)
VALUES (%(egress)s, %(host)s, clock_timestamp() + make_interval(secs => %(interval)s))
ON CONFLICT (egress, host) DO UPDATE
SET tat = GREATEST(r.tat, clock_timestamp(), r.paused_until) + make_interval(secs => %(interval)s)
RETURNING EXTRACT(EPOCH FROM r.tat - clock_timestamp())::float8,
    EXTRACT(EPOCH FROM GREATEST(r.paused_until, clock_timestamp()) - clock_timestamp())::float8
"""
_PAUSE = """
INSERT INTO ev_host_rates AS r (egress, host, tat, paused_until)
VALUES (%(egress)s, %(host)s, clock_timestamp(),
    clock_timestamp() + make_interval(secs => %(secs)s))
ON CONFLICT (egress, host) DO UPDATE
SET paused_until = GREATEST(r.paused_until, EXCLUDED.paused_until)
"""


class _Gone(Exception):
    """The database cannot be used any more (already reported)."""


class PostgresHostLimits:
    """`SharedHostLimits` over PostgreSQL: one async connection on the prober's loop."""

    def __init__(
        self,
        url: str | CacheUrl,
        egress: str = "",
        *,
        logger: logging.Logger | None = None,
        lease_seconds: float = LEASE_SECONDS,
        connect_timeout: float = 10.0,
    ) -> None:
        #: The run's `cache_url`, shared with its caches (one WARNING, no dialling once lost).
        self.link = url if isinstance(url, CacheUrl) else CacheUrl(url, logger)
        self.egress = egress
        self.logger = self.link.logger
        self.lease = float(lease_seconds)
        self.connect_timeout = connect_timeout
        self.holder = uuid.uuid4().hex
        #: Slots waited for and seconds spent waiting (the prober's politeness, for the report).
        self.waits = 0
        self.waited = 0.0
        self._stale: list[str] = []  # holders of an earlier loop, whose slots are given back
        self._db: psycopg.AsyncConnection[Any] | None = None
        self._opening: asyncio.Lock | None = None
        self._renewer: asyncio.Task[None] | None = None

    # -- SharedHostLimits ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def slot(self, ip: str, cap: int) -> AsyncIterator[None]:
        number = await self._take(ip, max(int(cap), 1))
        try:
            yield
        finally:
            if number is not None:
                await asyncio.shield(self._give(ip, number))

    async def book(self, ip: str, interval: float, burst: float) -> tuple[float, float]:
        params = {"egress": self.egress, "host": ip, "interval": interval}
        try:
            row = await self._one(_BOOK, params)
        except _Gone:
            return 0.0, 0.0
        if row is None:
            return 0.0, 0.0
        return max(0.0, float(row[0]) - burst), max(0.0, float(row[1]))

    async def pause(self, ip: str, seconds: float) -> None:
        with contextlib.suppress(_Gone):
            await self._run(_PAUSE, {"egress": self.egress, "host": ip, "secs": seconds})

    def reset_loop(self) -> None:
        """The connection and the renewing task belong to the old loop: drop them; the slots
        they held are given back from the new loop."""
        if self._db is not None or self._renewer is not None:
            self._stale.append(self.holder)
            self.holder = uuid.uuid4().hex
        self._db, self._opening, self._renewer = None, None, None

    async def aclose(self) -> None:
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()
            with contextlib.suppress(BaseException):
                await renewer
        db, self._db = self._db, None
        if db is None:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_OP_TIMEOUT):
                await db.execute(_GIVE_ALL, ([self.holder, *self._stale],))
        with contextlib.suppress(Exception):
            await db.close()
        if self.waits:
            self.logger.debug(
                "Shared mail host caps: %d sessions waited %.1f s for a slot held by another "
                "worker on this egress IP.",
                self.waits,
                self.waited,
            )

    # -- slots -----------------------------------------------------------------------------------

    async def _take(self, ip: str, cap: int) -> int | None:
        """A slot number of `ip` (waiting while every slot is leased), None without the store."""
        params = {
            "egress": self.egress,
            "host": ip,
            "cap": cap,
            "holder": self.holder,
            "lease": self.lease,
        }
        loop = asyncio.get_running_loop()
        started, pause = loop.time(), _POLL_FIRST
        while True:
            # Shielded: a caller cancelled while its statement runs must not leak the slot.
            attempt = asyncio.ensure_future(self._one(_TAKE, params))
            try:
                row = await asyncio.shield(attempt)
            except _Gone:
                return None
            except asyncio.CancelledError:
                attempt.add_done_callback(lambda done: self._give_back_late(ip, done))
                raise
            if row is not None:
                self._keep_renewing()
                if pause > _POLL_FIRST:
                    self.waits += 1
                    self.waited += loop.time() - started
                return int(row[0])
            await asyncio.sleep(pause * random.uniform(0.5, 1.0))
            pause = min(pause * 2, _POLL_LAST)

    def _give_back_late(self, ip: str, done: asyncio.Future[Any]) -> None:
        """A slot taken for a caller that was cancelled meanwhile goes back at once."""
        if done.cancelled() or done.exception() is not None or done.result() is None:
            return
        task = asyncio.ensure_future(self._give(ip, int(done.result()[0])))
        task.add_done_callback(lambda _: None)

    async def _give(self, ip: str, number: int) -> None:
        with contextlib.suppress(_Gone):
            await self._run(_GIVE, (self.egress, ip, number, self.holder))

    def _keep_renewing(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.ensure_future(self._renew())

    async def _renew(self) -> None:
        """Renew this worker's leases while it runs (one statement for all its slots)."""
        with contextlib.suppress(_Gone):
            while True:
                await asyncio.sleep(self.lease / 4)
                await self._run(_RENEW, (self.lease, self.holder))

    # -- the database ----------------------------------------------------------------------------

    async def _one(self, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        cursor = await self._run(sql, params)
        return await cursor.fetchone()

    async def _run(self, sql: str, params: Any) -> psycopg.AsyncCursor[Any]:
        """Run one statement; raises `_Gone` (after one WARNING) when the database fails."""
        if self.link.down:
            self._drop()
            raise _Gone
        try:
            async with asyncio.timeout(_OP_TIMEOUT):
                db = await self._connection()
                return await db.execute(sql, params)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            self.link.lost(exc)
            self._drop()
            raise _Gone from None

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._db is not None:
            return self._db
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._db is None:
                self._db = await self._connect()
        return self._db

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        db = await psycopg.AsyncConnection.connect(
            self.link.url, **connect_options(self.connect_timeout, _OP_TIMEOUT)
        )
        try:
            async with db.transaction():
                await db.execute("SELECT pg_advisory_xact_lock(%s)", (_SETUP_LOCK,))
                for statement in _TABLES:
                    await db.execute(statement)
            for statement in _FORGET:
                await db.execute(statement)
            if self._stale:
                await db.execute(_GIVE_ALL, (self._stale,))
                self._stale = []
        except BaseException:
            with contextlib.suppress(Exception):
                await db.close()
            raise
        return db

    def _drop(self) -> None:
        """Close the connection of a lost database (in the background: it may hang)."""
        db, self._db = self._db, None
        if db is not None:
            task = asyncio.ensure_future(db.close())
            task.add_done_callback(lambda _: None)
