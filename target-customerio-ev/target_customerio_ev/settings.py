"""The target's settings: the one declaration of each, the checks, and the resolved `Settings`.

Each setting's name, type, default, description and limits are declared once, in `CONFIG_SCHEMA`
(what `--about` shows); `Settings` takes its defaults from there. `config_errors` gives every
problem as one line naming the setting, before any network call: first what the schema says, then
the rules a schema cannot express (`rule_errors`). Secrets are never echoed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from singer_sdk import typing as th
from singer_sdk.plugin_base import JSONSchemaValidator

from .urls import normalized_origin, origin_error

DEFAULT_TRAITS = ("EV_Status", "EV_SubStatus", "EV_Validation_Timestamp")
PIPELINES_HOSTS = {"us": "https://cdp.customer.io", "eu": "https://cdp-eu.customer.io"}
TRACK_HOSTS = {"us": "https://track.customer.io", "eu": "https://track-eu.customer.io"}
APP_HOSTS = {"us": "https://api.customer.io", "eu": "https://api-eu.customer.io"}
EMAIL_ONLY_MODES = ("empty_user_id", "email_as_user_id", "track")
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
        description="Record fields sent as traits (attributes). Add EV_Provider, EV_Free, "
        "EV_Role or EV_DidYouMean to send the mapper's extra_fields; a null field is not sent.",
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
        "report_path",
        th.StringType,
        description="JSON file that receives the run's summary at the end (counts written, "
        "skipped and dead-lettered, the dead letters' reasons, the landing check): what "
        "emailverify-report draws as the report's 'Written to Customer.io' part. No personal data.",
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
        "email_only_identify",
        th.StringType,
        default="empty_user_id",
        allowed_values=list(EMAIL_ONLY_MODES),
        description="How People without an id are addressed (api: pipelines): empty_user_id "
        "(userId '' plus traits.email), email_as_user_id (userId is the address) or track (Track "
        "API v2 identifiers.email with _update: true; needs track_site_id and track_api_key).",
    ),
    th.Property(
        "app_api_key",
        th.StringType,
        secret=True,
        description="App API key (Bearer) of the workspace written to: after the run, a sample of "
        "the People written is read back to check that the new values landed.",
    ),
    th.Property(
        "app_api_url",
        th.StringType,
        description="Origin override for the App API (default by region: api.customer.io or "
        "api-eu.customer.io). Plain http:// only for loopback hosts.",
    ),
    th.Property(
        "landing_check_sample",
        th.IntegerType(minimum=0, maximum=1000),
        default=50,
        description="People read back after the run (split evenly across how they were "
        "identified: id, email only, cio_id); 0 turns the landing check off.",
    ),
    th.Property(
        "landing_check_timeout",
        th.NumberType(minimum=1, maximum=3600),
        default=300.0,
        description="Seconds the landing check waits for the sampled People to show the new "
        "values (writes become visible with a delay).",
    ),
    th.Property(
        "max_batch_bytes",
        th.IntegerType(minimum=API_MESSAGE_LIMIT + 1024, maximum=API_BATCH_LIMIT),
        default=450_000,
        description="Upper bound of one batch request body, in bytes (the API limit is 500 KB).",
    ),
    th.Property(
        "max_batch_messages",
        th.IntegerType(minimum=1, maximum=10_000),
        default=500,
        description="Upper bound of messages in one batch request.",
    ),
    th.Property(
        "max_in_flight",
        th.IntegerType(minimum=1, maximum=32),
        default=4,
        description="Batch requests sent concurrently while a batch drains.",
    ),
    th.Property(
        "max_retries",
        th.IntegerType(minimum=0, maximum=50),
        default=8,
        description="Retries of one request on 408, 429, 5xx, timeouts and dropped connections.",
    ),
    th.Property(
        "max_backoff_seconds",
        th.NumberType(exclusive_minimum=0),
        default=30.0,
        description="Longest single wait between retries (Retry-After is honoured up to this).",
    ),
    th.Property(
        "request_timeout",
        th.NumberType(exclusive_minimum=0),
        default=30.0,
        description="Seconds one HTTP request may take in all: connecting, sending, and reading "
        "the whole answer (a server trickling its answer is cut off here).",
    ),
    th.Property(
        "checkpoint_interval_seconds",
        th.NumberType(exclusive_minimum=0),
        default=300.0,
        description="Drain every pending batch and emit the latest STATE at least this often.",
    ),
    th.Property(
        "metrics_log_level",
        th.StringType,
        default="WARNING",
        allowed_values=["DEBUG", "INFO", "WARNING", "ERROR"],
        description="Level of singer-sdk's METRIC lines (one per batch, per stream): INFO or DEBUG "
        "logs them for machines that read them; WARNING or ERROR keeps them off the console.",
    ),
).to_dict()

PROPERTIES: dict[str, dict[str, Any]] = CONFIG_SCHEMA["properties"]
DEFAULTS: dict[str, Any] = {
    name: spec["default"] for name, spec in PROPERTIES.items() if "default" in spec
}
SECRETS = tuple(name for name, spec in PROPERTIES.items() if spec.get("secret"))


def setting(config: Mapping[str, Any], name: str) -> Any:
    """The value of setting `name`, or its schema default when it is unset (absent or null)."""
    value = config.get(name)
    return DEFAULTS.get(name) if value is None else value


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
    report_path: str | None
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
    metrics_log_level: str
    email_only_identify: str
    app_api_key: str
    app_base_url: str
    track_base_url: str
    landing_check_sample: int
    landing_check_timeout: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """Settings from a config, validated or partial: unset settings take the schema default."""
        region = str(setting(config, "region"))
        api = str(setting(config, "api"))
        track = setting(config, "track_api_url") or TRACK_HOSTS.get(region, "")
        if api == "track":
            base = track
        else:
            base = setting(config, "api_url") or PIPELINES_HOSTS.get(region, "")
        app = setting(config, "app_api_url") or APP_HOSTS.get(region, "")
        return cls(
            api=api,
            pipelines_api_key=setting(config, "pipelines_api_key") or "",
            base_url=normalized_origin(str(base)),
            identify_by=str(setting(config, "identify_by")),
            traits=tuple(setting(config, "traits")),
            timestamp_format=str(setting(config, "timestamp_format")),
            skip_unchanged=bool(setting(config, "skip_unchanged")),
            dry_run=bool(setting(config, "dry_run")),
            dead_letter_path=setting(config, "dead_letter_path") or None,
            report_path=setting(config, "report_path") or None,
            track_site_id=setting(config, "track_site_id") or "",
            track_api_key=setting(config, "track_api_key") or "",
            update_only=bool(setting(config, "update_only")),
            region=region,
            max_batch_bytes=int(setting(config, "max_batch_bytes")),
            max_batch_messages=int(setting(config, "max_batch_messages")),
            max_in_flight=int(setting(config, "max_in_flight")),
            max_retries=int(setting(config, "max_retries")),
            max_backoff_seconds=float(setting(config, "max_backoff_seconds")),
            request_timeout=float(setting(config, "request_timeout")),
            checkpoint_interval_seconds=float(setting(config, "checkpoint_interval_seconds")),
            metrics_log_level=str(setting(config, "metrics_log_level")),
            email_only_identify=str(setting(config, "email_only_identify")),
            app_api_key=setting(config, "app_api_key") or "",
            app_base_url=normalized_origin(str(app)),
            track_base_url=normalized_origin(str(track)),
            landing_check_sample=int(setting(config, "landing_check_sample")),
            landing_check_timeout=float(setting(config, "landing_check_timeout")),
        )

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every credential set: redacted from whatever a server says back (`errors.redact`)."""
        values = (self.pipelines_api_key, self.track_site_id, self.track_api_key, self.app_api_key)
        return tuple(value for value in values if value)

    @property
    def landing_check(self) -> bool:
        """Whether the run ends by reading a sample of its writes back (and holds STATE until)."""
        return bool(self.app_api_key) and self.landing_check_sample > 0 and not self.dry_run


def secret_error(value: object, setting: str) -> str | None:
    """Why `value` cannot be the secret `setting` (never echoing it), or None.

    A key is visible ASCII: a space, line break or control character copied along with it would
    break the request, or smuggle a header into it.
    """
    if not isinstance(value, str) or not value:
        return f"{setting} must be a non-empty string."
    if not all("!" <= char <= "~" for char in value):
        return (
            f"{setting} contains a space, line break or other character no key has: "
            "copy the key again without them."
        )
    return None


def config_errors(config: dict[str, Any], schema: dict[str, Any] = CONFIG_SCHEMA) -> list[str]:
    """Every problem with `config`, one line each naming the setting, never a secret's value.

    First what `schema` says (the target passes it with the SDK's built-in settings added); the
    rules it cannot express only when the schema is satisfied, since they read typed values.
    Like the SDK's own check, this fills schema defaults into `config`.
    """
    return schema_errors(config, schema) or rule_errors(config)


def schema_errors(config: dict[str, Any], schema: dict[str, Any] = CONFIG_SCHEMA) -> list[str]:
    """The schema's verdict on `config`, one line each (fills in its defaults, as the SDK does)."""
    secrets = {name for name, spec in schema.get("properties", {}).items() if spec.get("secret")}
    errors = sorted(
        JSONSchemaValidator(schema).iter_errors(config), key=lambda e: [str(p) for p in e.path]
    )
    return [_schema_problem(error, secrets) for error in errors]


def _schema_problem(error: Any, secrets: set[str]) -> str:
    path = list(error.absolute_path)
    if not path:
        return f"config: {error.message}."
    name = str(path[0])
    where = name + "".join(f"[{part!r}]" for part in path[1:])
    shown = "" if name in secrets else f", got {_shown(error.instance)}"
    kind = error.validator
    if kind == "type":
        expected = error.validator_value
        expected = [expected] if isinstance(expected, str) else expected
        kinds = " or ".join(_KINDS.get(t, t) for t in expected if t != "null")
        return f"{where} must be {kinds}{shown}."
    if kind == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value if v is not None)
        return f"{where} must be one of {allowed}{shown}."
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return f"{where} must be {_range(error.schema)}{shown}."
    if name in secrets:
        return f"{where} is not valid ({kind}); its value is not shown."
    return f"{where}: {error.message}."


_KINDS = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
}


def _range(spec: Mapping[str, Any]) -> str:
    """The limits a property declares, in words: "between 1 and 32", "greater than 0"..."""
    low, high = spec.get("minimum"), spec.get("maximum")
    if low is not None and high is not None:
        return f"between {low} and {high}"
    parts = []
    if low is not None:
        parts.append(f"at least {low}")
    if spec.get("exclusiveMinimum") is not None:
        parts.append(f"greater than {spec['exclusiveMinimum']}")
    if high is not None:
        parts.append(f"at most {high}")
    if spec.get("exclusiveMaximum") is not None:
        parts.append(f"less than {spec['exclusiveMaximum']}")
    return " and ".join(parts)


def _shown(value: Any) -> str:
    """A non-secret value as given, shortened."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def rule_errors(config: Mapping[str, Any]) -> list[str]:
    """The checks a JSON schema cannot express (settings that depend on each other, secrets)."""
    errors: list[str] = []
    api = setting(config, "api")
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
        errors += _origin_errors(config, "api_url")
        if setting(config, "email_only_identify") == "track":
            missing = [k for k in ("track_site_id", "track_api_key") if not config.get(k)]
            if missing:
                errors.append(
                    f"email_only_identify: track needs {' and '.join(missing)} (the workspace's "
                    "Track API credentials), or choose empty_user_id or email_as_user_id."
                )
            errors += _origin_errors(config, "track_api_url")
    elif api == "track":
        missing = [k for k in ("track_site_id", "track_api_key") if not config.get(k)]
        if missing:
            errors.append(
                f"api: track needs {' and '.join(missing)} (the workspace's Track API credentials)."
            )
        errors += _origin_errors(config, "track_api_url")
        mode = setting(config, "email_only_identify")
        if mode != DEFAULTS["email_only_identify"]:
            errors.append(
                f"email_only_identify: {mode} applies to api: pipelines only; with api: track "
                "People without an id are addressed by identifiers.email already: drop it."
            )
    errors += _origin_errors(config, "app_api_url")
    for name in SECRETS:
        value = config.get(name)
        problem = None if value is None or value == "" else secret_error(value, name)
        if problem is not None:
            errors.append(problem)
    traits = config.get("traits")
    if traits is not None and not [t for t in traits if t]:
        errors.append(
            "traits is empty: list the record fields to send, e.g. [EV_Status, EV_SubStatus]."
        )
    if config.get("identify_by") == "email" and "email" in (traits or ()):
        errors.append(
            "traits must not contain 'email' when identify_by is email (it is the identifier)."
        )
    load_method = config.get("load_method")
    if load_method not in (None, "upsert", "append-only"):
        errors.append(
            f"load_method {load_method!r} is not supported: Customer.io identify is an upsert."
        )
    return errors


def _origin_errors(config: Mapping[str, Any], name: str) -> list[str]:
    url = config.get(name)
    problem = origin_error(url, name) if url else None
    return [problem] if problem else []
