"""Which caches a run uses: the verdict cache and the domain knowledge, each in `cache_url`
(PostgreSQL, shared by workers), `cache_path` (SQLite) or memory for the run. Kept apart from the
backends so none imports another, and so psycopg loads only for a run with `cache_url`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mapper_emailverify.engine.host_limits import SharedHostLimits
from mapper_emailverify.stream_map.domain_cache import DomainStore, SqliteDomainKnowledge
from mapper_emailverify.stream_map.verdict_cache import (
    DEFAULT_TRANSIENT_HOURS,
    MemoryResultsCache,
    ResultsCache,
    SqliteResultsCache,
)

if TYPE_CHECKING:  # psycopg loads only for a run with cache_url
    from mapper_emailverify.stream_map.verdict_cache_pg import CacheUrl


def open_cache(
    path: str | None,
    ttl_days: float,
    transient_hours: float = DEFAULT_TRANSIENT_HOURS,
    logger: logging.Logger | None = None,
    *,
    url: str | None = None,
) -> ResultsCache:
    """`cache_url` (PostgreSQL, shared by workers), `cache_path` (SQLite) or memory for this run.
    A `cache_url` whose database cannot be used raises `ConfigError` (one line)."""
    if url:
        # Imported here: a SQLite or in-memory run never loads psycopg.
        from mapper_emailverify.stream_map.verdict_cache_pg import PostgresResultsCache

        return PostgresResultsCache(url, ttl_days, transient_hours, logger=logger)
    if path:
        return SqliteResultsCache(path, ttl_days, transient_hours, logger=logger)
    return MemoryResultsCache(ttl_days, transient_hours)


def open_domain_knowledge(
    cache_path: str | None,
    ttl_days: float,
    logger: logging.Logger | None = None,
    *,
    url: str | None = None,
    beside: ResultsCache | None = None,
) -> DomainStore[Any] | None:
    """The mapper's domain knowledge: in `cache_url` (PostgreSQL) or `cache_path` (SQLite); None
    without either or when `domain_cache_ttl_days` is 0. `beside` is the run's verdict cache: on
    the same `cache_url` the two share one `CacheUrl`, so a lost database gives one WARNING and
    neither dials it again."""
    if ttl_days <= 0:
        return None
    if url:
        from mapper_emailverify.stream_map.domain_cache_pg import PostgresDomainKnowledge

        return PostgresDomainKnowledge(_link(url, beside), ttl_days, logger=logger)
    if cache_path:
        return SqliteDomainKnowledge(cache_path, ttl_days, logger=logger)
    return None


def open_host_limits(
    url: str,
    egress: str,
    logger: logging.Logger | None = None,
    *,
    beside: ResultsCache | None = None,
) -> SharedHostLimits:
    """Each mail host's caps shared through `cache_url` by the workers on `egress` (see
    `host_limits_pg`); on the verdict cache's `CacheUrl` when `beside` uses the same URL."""
    from mapper_emailverify.stream_map.host_limits_pg import PostgresHostLimits

    return PostgresHostLimits(_link(url, beside), egress, logger=logger)


def _link(url: str, beside: ResultsCache | None) -> str | CacheUrl:
    """The verdict cache's `CacheUrl` when it lives at `url` (one WARNING for the run's stores
    when the database is lost, and none dials it again), else `url`."""
    from mapper_emailverify.stream_map.verdict_cache_pg import PostgresResultsCache

    if isinstance(beside, PostgresResultsCache) and beside.link.url == url:
        return beside.link
    return url
