"""The tap's settings, each declared once, and the checks JSON Schema cannot express.

`CONFIG_SCHEMA` holds every setting's name, type, default, description and limits (``--about``
shows them, and the README's settings table follows it); code reads a setting through `value`,
`number` or `integer`, which fall back to the declared default, and never repeats one.

Every check here runs before the first request, and each problem is one line that says what to
change.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from singer_sdk import typing as th
from singer_sdk.plugin_base import JSONSchemaValidator

from .audience import filter_error
from .partition import Partition, partition_error
from .urls import normalized_origin, origin_error

REGION_HOSTS = {"us": "https://api.customer.io", "eu": "https://api-eu.customer.io"}
WORKSPACE_HOSTS = {"fly.customer.io": "us", "us.fly.customer.io": "us", "eu.fly.customer.io": "eu"}
WORKSPACE_URL_EXAMPLE = "https://fly.customer.io/workspaces/123456"
MAX_PAGE_SIZE = 1000  # the search endpoint's maximum `limit`
METRICS_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

CONFIG_SCHEMA = th.PropertiesList(
    th.Property(
        "app_api_key",
        th.StringType(nullable=False, min_length=1),
        required=True,
        secret=True,
        title="App API key",
        description=(
            "Customer.io App API key (Bearer), from Account Settings > API Credentials > "
            "App API Keys."
        ),
    ),
    th.Property(
        "region",
        th.StringType(nullable=False),
        default="us",
        allowed_values=list(REGION_HOSTS),
        title="Region",
        description="Region of the workspace: us (api.customer.io) or eu (api-eu.customer.io).",
    ),
    th.Property(
        "workspace_url",
        th.StringType,
        title="Workspace URL",
        description=(
            f"Optional workspace URL, e.g. {WORKSPACE_URL_EXAMPLE}; an eu.fly.customer.io host "
            "implies region eu."
        ),
    ),
    th.Property(
        "api_url",
        th.StringType,
        title="API URL override",
        description=(
            "Override of the App API origin; requests go to {api_url}/v1/... Plain http:// is "
            "only accepted for loopback hosts."
        ),
    ),
    th.Property(
        "segment_ids",
        th.ArrayType(th.IntegerType(minimum=1)),
        title="Segment ids",
        description="Only People in any of these segments; empty means every Person.",
    ),
    th.Property(
        "filter",
        th.CustomType({"type": ["object", "string"]}),
        title="Audience filter",
        description=(
            "Only the People this Customer.io audience filter selects: the JSON the search "
            "endpoint takes (and, or, not, segment, attribute with eq or exists), or a preset: "
            "unverified (no status_attribute) or unknown (status_attribute equals Unknown). "
            "Combined (AND) with segment_ids."
        ),
    ),
    th.Property(
        "status_attribute",
        th.StringType(nullable=False, min_length=1),
        default="EV_Status",
        title="Status attribute",
        description=(
            "The attribute the filter presets look at: the mapper's {field_prefix}Status."
        ),
    ),
    th.Property(
        "partition",
        th.StringType,
        title="Partition",
        description=(
            "Optional i/N (0 <= i < N), e.g. 0/3, 1/3 and 2/3 for three jobs: only the People "
            "whose cio_id hashes to share i of N, so N jobs together read every Person once; "
            "each uses floor(requests_per_second / N) (3 of 10 for three jobs)."
        ),
    ),
    th.Property(
        "requests_per_second",
        th.NumberType(nullable=False, exclusive_minimum=0),
        default=10,
        title="Requests per second",
        description=(
            "Client-side budget shared by every request of the run (Customer.io allows 10/s); "
            "with partition i/N, the workspace's budget, of which each partition uses "
            "floor(requests_per_second / N)."
        ),
    ),
    th.Property(
        "page_size",
        th.IntegerType(nullable=False, minimum=1, maximum=MAX_PAGE_SIZE),
        default=MAX_PAGE_SIZE,
        title="Search page size",
        description=f"People per search page (at most {MAX_PAGE_SIZE}).",
    ),
    th.Property(
        "hydration_concurrency",
        th.IntegerType(nullable=False, minimum=1, maximum=64),
        default=8,
        title="Hydration concurrency",
        description=(
            "Attribute requests in flight at once; the requests_per_second budget still applies."
        ),
    ),
    th.Property(
        "max_retries",
        th.IntegerType(nullable=False, minimum=0, maximum=50),
        default=8,
        title="Max retries",
        description="Retries of a request after a 429, 5xx, timeout or dropped connection.",
    ),
    th.Property(
        "max_retry_seconds",
        th.NumberType(nullable=False, exclusive_minimum=0),
        default=300,
        title="Max retry time",
        description="Give up retrying one request after this many seconds.",
    ),
    th.Property(
        "request_timeout",
        th.NumberType(nullable=False, exclusive_minimum=0),
        default=60,
        title="Request timeout",
        description=(
            "Seconds one App API request may take in all (connecting, sending, reading the whole "
            "answer) before it is retried."
        ),
    ),
    th.Property(
        "metrics_log_level",
        th.StringType(nullable=False),
        default="WARNING",
        allowed_values=list(METRICS_LOG_LEVELS),
        title="Metrics log level",
        description=(
            "Level of singer-sdk's METRIC lines (one per request, per stream): INFO or DEBUG logs "
            "them for machines that read them; WARNING or ERROR keeps them off the console."
        ),
    ),
).to_dict()

# The tap's own settings, copied before the SDK appends its built-ins to CONFIG_SCHEMA in place.
PROPERTIES: Mapping[str, Mapping[str, Any]] = MappingProxyType(dict(CONFIG_SCHEMA["properties"]))
SECRETS = tuple(name for name, prop in PROPERTIES.items() if prop.get("secret"))


# ---------------------------------------------------------------------------------- reading
def default(name: str) -> Any:
    """The default declared for setting ``name`` (None when it declares none)."""
    return PROPERTIES[name].get("default")


@functools.cache
def _validator(name: str) -> Any:
    return JSONSchemaValidator(dict(PROPERTIES[name]))


def value(config: Mapping[str, Any], name: str) -> Any:
    """Setting ``name`` as the run uses it: the configured value, else the declared default.

    A value its declaration rejects counts as unset too: config is validated before any request,
    so this only matters where the SDK does not validate (``--discover``).
    """
    given = config.get(name)
    if given is None or not _validator(name).is_valid(given):
        return default(name)
    return given


def number(config: Mapping[str, Any], name: str) -> float:
    """A numeric setting (see `value`)."""
    return float(value(config, name))


def integer(config: Mapping[str, Any], name: str) -> int:
    """An integer setting (see `value`)."""
    return int(value(config, name))


# ---------------------------------------------------------------------------------- checking
def schema_errors(config: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """JSON Schema problems (filling in defaults as a side effect), never echoing a secret."""
    secrets = {name for name, prop in schema.get("properties", {}).items() if prop.get("secret")}
    problems = []
    for error in JSONSchemaValidator(schema).iter_errors(config):
        path = list(error.absolute_path)
        name = path[0] if path else None
        if name in secrets:
            problems.append(f"{name} must be a non-empty string")
        elif error.validator == "required":
            problems.append(f"{error.message}: add it to the tap's config")
        else:
            where = "".join(f"[{part!r}]" for part in path)
            problems.append(f"{error.message} in config{where}" if where else error.message)
    return problems


def secret_error(value: object, setting: str) -> str | None:
    """Why ``value`` cannot be the secret ``setting`` (never echoing it), or None.

    A key is a non-empty string of visible ASCII: a space, line break or control character copied
    along with it would break the request, or smuggle a header into it.
    """
    if not isinstance(value, str) or not value:
        return f"{setting} must be a non-empty string"
    if not all("!" <= char <= "~" for char in value):
        return (
            f"{setting} contains a space, line break or other character no key has: "
            "copy the key again without them"
        )
    return None


def workspace_region(workspace_url: str) -> tuple[str | None, str | None]:
    """(region implied by a workspace URL, error) -- exactly one of the two is None."""
    try:
        parts = urlsplit(workspace_url.strip())
        host = (parts.hostname or "").lower()
    except ValueError:
        host = ""
    if host not in WORKSPACE_HOSTS or parts.scheme != "https":
        return None, (
            f"workspace_url must be a Customer.io workspace URL such as {WORKSPACE_URL_EXAMPLE} "
            f"(or https://eu.fly.customer.io/... for EU workspaces)"
        )
    return WORKSPACE_HOSTS[host], None


#: The SDK would write BATCH files from `batch_config` even though the tap does not declare `batch`.
BATCH_REFUSED = (
    "batch_config is not supported: mapper-emailverify cannot read BATCH messages; remove "
    "batch_config from the tap's config"
)


def config_errors(config: Mapping[str, Any], *, region_given: bool) -> list[str]:
    """Problems JSON Schema cannot see. ``region_given``: the user set region (not the default)."""
    errors: list[str] = []
    for name in SECRETS:
        secret = config.get(name)
        # A value of the wrong type or empty is the schema's to report, once.
        if isinstance(secret, str) and secret and (error := secret_error(secret, name)):
            errors.append(error)
    region = config.get("region")
    workspace_url, api_url = config.get("workspace_url"), config.get("api_url")
    if workspace_url and isinstance(workspace_url, str):
        implied, error = workspace_region(workspace_url)
        if error:
            errors.append(error)
        elif region_given and implied != region:
            host = urlsplit(workspace_url.strip()).hostname
            errors.append(
                f"region is '{region}' but workspace_url is on {host}, a workspace of region "
                f"'{implied}': set region to '{implied}' or fix workspace_url"
            )
    if api_url and isinstance(api_url, str) and (error := origin_error(api_url, "api_url")):
        errors.append(error)
    if error := filter_error(config.get("filter")):
        errors.append(error)
    if error := partition_error(config.get("partition")):
        errors.append(error)
    if config.get("batch_config"):
        errors.append(BATCH_REFUSED)
    return errors


# ---------------------------------------------------------------------------------- deriving
def effective_region(config: Mapping[str, Any], *, region_given: bool) -> str:
    """The region to use: the one set, else the one the workspace URL implies, else the default."""
    if (
        not region_given
        and isinstance(workspace_url := config.get("workspace_url"), str)
        and workspace_url
    ):
        implied, _ = workspace_region(workspace_url)
        if implied:
            return implied
    return str(value(config, "region"))


def api_origin(config: Mapping[str, Any], region: str) -> str:
    """Where requests go: ``{origin}/v1/...``."""
    if api_url := config.get("api_url"):
        return normalized_origin(api_url)
    return REGION_HOSTS[region]


def segment_ids(config: Mapping[str, Any]) -> list[int]:
    """Configured segment ids, de-duplicated, in the order given (none set: every Person)."""
    return list(dict.fromkeys(config.get("segment_ids") or []))


def partition(config: Mapping[str, Any]) -> Partition | None:
    """The configured partition; None when unset (every Person)."""
    return Partition.parse(config.get("partition"))


def request_rate(config: Mapping[str, Any]) -> float:
    """Requests per second for this job: the budget, or a partition's share of it.

    The server counts requests per 1 s window over every job at once, and jobs start in any
    phase: at 3.33/s three jobs may each start 4 requests in one second (12 of 10). So a share is
    a whole number of the window's requests, `floor(budget / N)`: N jobs never pass the budget in
    any window. Below one a second (N above the budget) it stays `budget / N`, and jobs in step
    may meet a 429, which they wait out.
    """
    budget = number(config, "requests_per_second")
    chosen = partition(config)
    if chosen is None:
        return budget
    share = budget / chosen.count
    return float(math.floor(share)) if share >= 1 else share
