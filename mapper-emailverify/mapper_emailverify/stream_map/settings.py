"""The mapper's settings: its own declared here, the engine's declared in `engine/config.py`.

`CONFIG_SCHEMA` (what `--about` and the README tables show) is built from both declarations, so
each setting has one name, type, default, description and set of limits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from singer_sdk import typing as th

from mapper_emailverify.engine.config import (
    Declared,
    VerifierConfig,
    coerce,
    declared,
    limit_error,
    setting,
)
from mapper_emailverify.engine.errors import ConfigError
from mapper_emailverify.stream_map.extra_fields import parse_extra_fields

DAY = 86400.0
HOUR = 3600.0
#: Settings shown before the engine's: what a user sets first.
_LEADING = ("email_field", "stream_email_fields", "field_prefix", "extra_fields")


@dataclass(frozen=True)
class MapperSettings:
    """The Singer side's settings (the engine's are `VerifierConfig`)."""

    email_field: str = setting(
        "email", "Field holding the address; a dotted path (a.email) reaches into objects."
    )
    stream_email_fields: dict[str, str] | None = setting(
        description='Per-stream override of `email_field`, e.g. {"contacts": "work.email"}.'
    )
    field_prefix: str = setting(
        "EV_",
        "Fields added: {prefix}Status, {prefix}SubStatus, {prefix}Validation_Timestamp.",
        blank_is_value=True,
    )
    extra_fields: tuple[str, ...] = setting(
        (),
        "Fields for marketers added besides the verdict, none by default: any of Provider "
        "(gmail, google_workspace, outlook, microsoft365, yahoo, mailru, yandex, zoho, icloud, "
        "gmx, proton or other), Free (a free mail provider), Role (a role account such as "
        "info@), DidYouMean (the address with a likely typo of a big provider's domain "
        "corrected: jane@gmial.com gives jane@gmail.com); added as {prefix}Provider and so on.",
        kind="strings",
    )
    cache_path: str | None = setting(
        description="SQLite file of past verdicts (hashed addresses only), reused across runs."
    )
    cache_url: str | None = setting(
        description="PostgreSQL URL (postgresql://user:password@host:5432/db) of a verdict cache "
        "and domain knowledge shared by several workers, instead of cache_path (same hashed keys "
        "and TTLs); workers on one egress IP also share each mail host's caps there (egress_ip). "
        "A database that cannot be used at start stops the run; one lost mid-run gives one "
        "warning and the run goes on without it.",
        secret=True,
    )
    egress_ip: str | None = setting(
        description="With cache_url: the public IP this worker probes mail servers from (any name "
        "of its egress will do). Workers with the same value (or none) share each mail host's "
        "max_connections_per_mx and max_rcpt_per_minute_per_mx through the database, as the "
        "host sees them as one client; give workers on different egress IPs different values "
        "and each keeps its own caps."
    )
    cache_ttl_days: float = setting(
        30.0,
        "Days a cached verdict is reused (transient Unknown ones: see "
        "reverify_unknown_after_hours).",
        minimum=0,
    )
    domain_cache_ttl_days: float = setting(
        7.0,
        "Days what a run learned about a domain (catch-all or not, provider, greylisting, "
        "STARTTLS per mail host) is reused from cache_path or cache_url, sparing a catch-all "
        "probe per domain (domains whose MX set changed are learned again); 0 learns afresh "
        "each run.",
        minimum=0,
    )
    reverify_after_days: float = setting(
        90.0,
        "A record already carrying a verification younger than this is not re-verified; "
        "0 always re-verifies.",
        minimum=0,
    )
    # Below a day, so a daily schedule always re-checks them.
    reverify_unknown_after_hours: float = setting(
        20.0,
        "Unknown verdicts caused by the moment (timeouts, greylisting, blocks, DNS errors) "
        "are trusted only this long, carried or cached, so the next daily run retries them.",
        minimum=0,
    )
    reverify_before: str | None = setting(
        description="Verdicts reached before this time (ISO 8601, e.g. 2026-12-01T08:00:00Z), "
        "carried or cached, are checked again: to redo exactly what a faulty run wrote."
    )
    infrastructure_unknown_threshold: float = setting(
        0.5,
        "Share of recent verdicts that may be infrastructure Unknowns (dns_error, "
        "smtp_unavailable, smtp_timeout: about this host, not the addresses) before the run "
        "stops instead of writing them; 1 turns the check off.",
        minimum=0,
        maximum=1,
    )
    bounce_history_stream: str | None = setting(
        "suppressions",
        "Stream whose bounces / invalid_emails records feed the hard-bounce check.",
        blank_is_value=True,
    )
    progress_interval_seconds: float = setting(
        10.0,
        "Seconds between two progress lines in the log: records done of the total the tap "
        "announced (its SCHEMA's expected_record_count), rate, time left, counts by status; "
        "0 logs only the last one.",
        minimum=0,
    )
    report_path: str | None = setting(description="Write the run summary as JSON to this file.")
    report_html_path: str | None = setting(
        description="Write the run summary as a self-contained HTML page with charts to this file "
        "(opens without a network; about 5 MB, plotly.js inline). emailverify-report draws the "
        "same page from report_path's JSON, with the target's report added."
    )

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MapperSettings:
        """The settings in `config` (None or "" means the default); other keys are the engine's."""
        values: dict[str, Any] = {}
        for item in declared(cls):
            value = config.get(item.name)
            if value is None or (value == "" and not item.doc.blank_is_value):
                continue
            value = coerce(item, value)
            if problem := limit_error(item, value):
                raise ConfigError(problem)
            values[item.name] = value
        settings = cls(**values)
        if settings.cache_path and settings.cache_url:
            raise ConfigError(
                "cache_path and cache_url are both set: pick one (cache_path for a SQLite file on "
                "this machine, cache_url for a PostgreSQL cache shared by several workers)"
            )
        if settings.cache_url and not settings.cache_url.startswith(
            ("postgresql://", "postgres://")
        ):
            raise ConfigError("cache_url must be a PostgreSQL URL: postgresql://user@host:5432/db")
        _ = settings.not_before  # a time that cannot be read is a configuration error now
        _ = settings.extras  # so is a field name that is not one
        return settings

    @property
    def not_before(self) -> float | None:
        """`reverify_before` as Unix seconds."""
        if not self.reverify_before:
            return None
        try:
            when = dt.datetime.fromisoformat(self.reverify_before.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(
                f"reverify_before must be an ISO 8601 time such as 2026-12-01T08:00:00Z, got "
                f"{self.reverify_before[:40]!r}"
            ) from None
        return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()

    @property
    def extras(self) -> tuple[str, ...]:
        """`extra_fields` as names of `extra_fields.EXTRA_FIELDS`, in their order."""
        return parse_extra_fields(self.extra_fields, self.field_prefix)

    @property
    def email_fields(self) -> dict[str, str]:
        return dict(self.stream_email_fields or {})

    @property
    def max_age(self) -> float:
        """Seconds a carried verification stays fresh; 0 turns freshness off."""
        return self.reverify_after_days * DAY

    @property
    def transient_max_age(self) -> float:
        return self.reverify_unknown_after_hours * HOUR


def _property(item: Declared) -> th.Property[Any]:
    doc = item.doc
    limits = {
        key: value
        for key, value in (
            ("minimum", doc.minimum),
            ("maximum", doc.maximum),
            ("exclusive_minimum", doc.exclusive_minimum),
        )
        if value is not None
    }
    kind: Any
    if item.kind == "boolean":
        kind = th.BooleanType
    elif item.kind == "integer":
        kind = th.IntegerType(**limits) if limits else th.IntegerType
    elif item.kind == "number":
        kind = th.NumberType(**limits) if limits else th.NumberType
    elif item.kind == "strings":
        kind = th.ArrayType(th.StringType)
    elif item.kind == "mapping":
        kind = th.ObjectType(additional_properties=th.StringType)
    else:
        kind = th.StringType
    default = item.default
    if isinstance(default, frozenset):
        default = sorted(default)
    elif isinstance(default, float) and default.is_integer():
        default = int(default)  # shown as 10, not 10.0
    return th.Property(
        item.name,
        kind,
        default=default,
        description=doc.description,
        secret=doc.secret or None,
        allowed_values=list(doc.choices) or None,
    )


def _all_settings() -> list[Declared]:
    mine = declared(MapperSettings)
    engine = [item for item in declared(VerifierConfig) if item.doc.mapper]
    leading = [item for item in mine if item.name in _LEADING]
    return leading + engine + [item for item in mine if item.name not in _LEADING]


CONFIG_SCHEMA: dict[str, Any] = th.PropertiesList(
    *(_property(item) for item in _all_settings())
).to_dict()
