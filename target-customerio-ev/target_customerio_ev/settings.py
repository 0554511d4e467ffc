"""The target's settings: the JSON schema users see, and the checks that need more than a schema.

Every check runs before any network call and yields one line that says what to change.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from singer_sdk import typing as th

DEFAULT_TRAITS = ("EV_Status", "EV_SubStatus", "EV_Validation_Timestamp")
PIPELINES_HOSTS = {"us": "https://cdp.customer.io", "eu": "https://cdp-eu.customer.io"}
TRACK_HOSTS = {"us": "https://track.customer.io", "eu": "https://track-eu.customer.io"}
API_BATCH_LIMIT = 500_000  # bytes per batch request, Pipelines and Track v2
API_MESSAGE_LIMIT = 32 * 1024  # bytes per call inside a batch

CONFIG_SCHEMA = th.PropertiesList(
    th.Property(
        "pipelines_api_key",
        th.StringType,
        secret=True,
        description="Pipelines (CDP) API write key of a 'Customer.io API' source; HTTP Basic user. "
        "Required unless api is 'track'.",
    ),
    th.Property(
        "region",
        th.StringType,
        default="us",
        allowed_values=["us", "eu"],
        description="Workspace region: us (cdp.customer.io) or eu (cdp-eu.customer.io).",
    ),
    th.Property(
        "api_url",
        th.StringType,
        description="Origin override for the Pipelines API; requests go to {api_url}/v1/... "
        "Plain http:// only for loopback hosts.",
    ),
    th.Property(
        "identify_by",
        th.StringType,
        default="auto",
        allowed_values=["auto", "id", "email", "cio_id"],
        description="Record field identifying the Person. auto: id when present, else the email.",
    ),
    th.Property(
        "traits",
        th.ArrayType(th.StringType),
        default=list(DEFAULT_TRAITS),
        description="Record fields sent as traits (attributes).",
    ),
    th.Property(
        "timestamp_format",
        th.StringType,
        default="unix",
        allowed_values=["unix", "iso8601"],
        description="How date-time traits are sent: Unix seconds (segment-friendly) or ISO 8601.",
    ),
    th.Property(
        "skip_unchanged",
        th.BooleanType,
        default=True,
        description="Skip a Person whose current attributes (record field 'attributes') already "
        "hold the values that would be sent.",
    ),
    th.Property(
        "dry_run",
        th.BooleanType,
        default=False,
        description="Log what would be sent; send nothing.",
    ),
    th.Property(
        "dead_letter_path",
        th.StringType,
        description="JSONL file that receives every message Customer.io rejects for good, with the "
        "reason. Without it, rejections are logged without personal data.",
    ),
    th.Property(
        "api",
        th.StringType,
        default="pipelines",
        allowed_values=["pipelines", "track"],
        description="pipelines (default) or track (Track API v2 batch; needed for update_only).",
    ),
    th.Property(
        "track_site_id", th.StringType, secret=True, description="Track API site id (api: track)."
    ),
    th.Property(
        "track_api_key", th.StringType, secret=True, description="Track API key (api: track)."
    ),
    th.Property(
        "update_only",
        th.BooleanType,
        default=False,
        description="Never create People (Track API '_update'); requires api: track.",
    ),
    th.Property(
        "track_api_url",
        th.StringType,
        description="Origin override for the Track API (default by region).",
    ),
    th.Property(
        "max_batch_bytes",
        th.IntegerType,
        default=450_000,
        description="Upper bound of one batch request body, in bytes (the API limit is 500 KB).",
    ),
    th.Property(
        "max_batch_messages",
        th.IntegerType,
        default=500,
        description="Upper bound of messages in one batch request.",
    ),
    th.Property(
        "max_in_flight",
        th.IntegerType,
        default=4,
        description="Batch requests sent concurrently while a batch drains.",
    ),
    th.Property(
        "max_retries",
        th.IntegerType,
        default=8,
        description="Retries of one request on 408, 429, 5xx, timeouts and dropped connections.",
    ),
    th.Property(
        "max_backoff_seconds",
        th.NumberType,
        default=30.0,
        description="Longest single wait between retries (Retry-After is honoured up to this).",
    ),
    th.Property(
        "request_timeout", th.NumberType, default=30.0, description="Seconds per HTTP request."
    ),
    th.Property(
        "checkpoint_interval_seconds",
        th.NumberType,
        default=300.0,
        description="Drain every pending batch and emit the latest STATE at least this often.",
    ),
).to_dict()


@dataclass(frozen=True)
class Settings:
    """Resolved settings with defaults applied; the single source the sinks and senders read."""

    api: str
    pipelines_api_key: str
    base_url: str
    identify_by: str
    traits: tuple[str, ...]
    timestamp_format: str
    skip_unchanged: bool
    dry_run: bool
    dead_letter_path: str | None
    track_site_id: str
    track_api_key: str
    update_only: bool
    region: str
    max_batch_bytes: int
    max_batch_messages: int
    max_in_flight: int
    max_retries: int
    max_backoff_seconds: float
    request_timeout: float
    checkpoint_interval_seconds: float

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Settings:
        region = config.get("region") or "us"
        api = config.get("api") or "pipelines"
        if api == "track":
            base = config.get("track_api_url") or TRACK_HOSTS.get(region, "")
        else:
            base = config.get("api_url") or PIPELINES_HOSTS.get(region, "")
        return cls(
            api=api,
            pipelines_api_key=config.get("pipelines_api_key") or "",
            base_url=str(base).rstrip("/"),
            identify_by=config.get("identify_by") or "auto",
            traits=tuple(config.get("traits") or DEFAULT_TRAITS),
            timestamp_format=config.get("timestamp_format") or "unix",
            skip_unchanged=bool(config.get("skip_unchanged", True)),
            dry_run=bool(config.get("dry_run", False)),
            dead_letter_path=config.get("dead_letter_path") or None,
            track_site_id=config.get("track_site_id") or "",
            track_api_key=config.get("track_api_key") or "",
            update_only=bool(config.get("update_only", False)),
            region=region,
            max_batch_bytes=int(config.get("max_batch_bytes") or 450_000),
            max_batch_messages=int(config.get("max_batch_messages") or 500),
            max_in_flight=int(config.get("max_in_flight") or 4),
            max_retries=int(config.get("max_retries", 8)),
            max_backoff_seconds=float(config.get("max_backoff_seconds") or 30.0),
            request_timeout=float(config.get("request_timeout") or 30.0),
            checkpoint_interval_seconds=float(config.get("checkpoint_interval_seconds") or 300.0),
        )


def config_errors(config: dict[str, Any]) -> list[str]:
    """Problems the JSON schema cannot express, one line each."""
    errors: list[str] = []
    api = config.get("api") or "pipelines"
    if api == "pipelines":
        if not config.get("pipelines_api_key"):
            errors.append(
                "pipelines_api_key is required: set the write key of your workspace's "
                "Customer.io API (Pipelines/CDP) source."
            )
        if config.get("update_only"):
            errors.append(
                "update_only needs api: track (the Pipelines API always creates missing People); "
                "set api: track with track_site_id and track_api_key, or drop update_only."
            )
        errors += _url_errors("api_url", config.get("api_url"))
    elif api == "track":
        missing = [k for k in ("track_site_id", "track_api_key") if not config.get(k)]
        if missing:
            errors.append(
                f"api: track needs {' and '.join(missing)} (the workspace's Track API credentials)."
            )
        errors += _url_errors("track_api_url", config.get("track_api_url"))
    traits = config.get("traits")
    if traits is not None and not [t for t in traits if t]:
        errors.append(
            "traits is empty: list the record fields to send, e.g. [EV_Status, EV_SubStatus]."
        )
    if config.get("identify_by") == "email" and "email" in (traits or ()):
        errors.append(
            "traits must not contain 'email' when identify_by is email (it is the identifier)."
        )
    limits = (
        ("max_batch_bytes", API_MESSAGE_LIMIT + 1024, API_BATCH_LIMIT),
        ("max_batch_messages", 1, 10_000),
        ("max_in_flight", 1, 32),
        ("max_retries", 0, 50),
    )
    for name, low, high in limits:
        value = config.get(name)
        if value is not None and not low <= int(value) <= high:
            errors.append(f"{name} must be between {low} and {high}, got {value}.")
    for name in ("request_timeout", "checkpoint_interval_seconds", "max_backoff_seconds"):
        value = config.get(name)
        if value is not None and float(value) <= 0:
            errors.append(f"{name} must be a positive number of seconds, got {value}.")
    load_method = config.get("load_method")
    if load_method not in (None, "upsert", "append-only"):
        errors.append(
            f"load_method {load_method!r} is not supported: Customer.io identify is an upsert."
        )
    return errors


def _url_errors(name: str, url: str | None) -> list[str]:
    if not url:
        return []
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [f"{name} must be an origin such as https://cdp.customer.io, got {url!r}."]
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return [f"{name} must be an origin without a path, e.g. https://cdp.customer.io."]
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        return [f"{name} uses plain http:// for a non-loopback host; use https://."]
    return []


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
