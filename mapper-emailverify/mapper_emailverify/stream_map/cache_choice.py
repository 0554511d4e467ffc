"""Which verdict cache a run uses: `cache_url` (PostgreSQL, shared by workers), `cache_path`
(SQLite) or memory for the run. Kept apart from both backends so neither imports the other."""

from __future__ import annotations

import logging

from mapper_emailverify.stream_map.verdict_cache import (
    DEFAULT_TRANSIENT_HOURS,
    MemoryResultsCache,
    ResultsCache,
    SqliteResultsCache,
)


def open_cache(
    path: str | None,
    ttl_days: float,
    transient_hours: float = DEFAULT_TRANSIENT_HOURS,
    logger: logging.Logger | None = None,
    *,
    url: str | None = None,
) -> ResultsCache:
    """`cache_url` (PostgreSQL, shared by workers), `cache_path` (SQLite) or memory for this run."""
    if url:
        # Imported here: a SQLite or in-memory run never loads psycopg.
        from mapper_emailverify.stream_map.verdict_cache_pg import PostgresResultsCache

        return PostgresResultsCache(url, ttl_days, transient_hours, logger=logger)
    if path:
        return SqliteResultsCache(path, ttl_days, transient_hours, logger=logger)
    return MemoryResultsCache(ttl_days, transient_hours)
