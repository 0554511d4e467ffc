"""The tap's settings (names fixed by DESIGN.md) and the checks JSON Schema cannot express.

Every check here runs before the first request, and each problem is one line that says what to change.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from singer_sdk import typing as th
from singer_sdk.plugin_base import JSONSchemaValidator

REGION_HOSTS = {"us": "https://api.customer.io", "eu": "https://api-eu.customer.io"}
WORKSPACE_HOSTS = {"fly.customer.io": "us", "us.fly.customer.io": "us", "eu.fly.customer.io": "eu"}
WORKSPACE_URL_EXAMPLE = "https://fly.customer.io/workspaces/123456"
MAX_PAGE_SIZE = 1000  # the search endpoint's maximum `limit`

CONFIG_SCHEMA = th.PropertiesList(
    th.Property(
        "app_api_key",
        th.StringType(nullable=False, min_length=1),
        required=True,
        secret=True,
        title="App API key",
        description="Customer.io App API key (Bearer), from Account Settings > API Credentials > App API Keys.",
    ),
    th.Property(
        "region",
        th.StringType(nullable=False),
        default="us",
        allowed_values=["us", "eu"],
        title="Region",
        description="Region of the workspace: us (api.customer.io) or eu (api-eu.customer.io).",
    ),
    th.Property(
        "workspace_url",
        th.StringType,
        title="Workspace URL",
        description=f"Optional workspace URL, e.g. {WORKSPACE_URL_EXAMPLE}; an eu.fly.customer.io host implies "
        "region eu.",
    ),
    th.Property(
        "api_url",
        th.StringType,
        title="API URL override",
        description="Override of the App API origin; requests go to {api_url}/v1/... Plain http:// is only "
        "accepted for loopback hosts.",
    ),
    th.Property(
        "segment_ids",
        th.ArrayType(th.IntegerType(minimum=1)),
        title="Segment ids",
        description="Only People in any of these segments; empty means every Person.",
    ),
    th.Property(
        "requests_per_second",
        th.NumberType(nullable=False, exclusive_minimum=0),
        default=10,
        title="Requests per second",
        description="Client-side budget shared by every request of the run (Customer.io allows 10/s).",
    ),
    th.Property(
        "page_size",
        th.IntegerType(nullable=False, minimum=1, maximum=MAX_PAGE_SIZE),
        default=MAX_PAGE_SIZE,
        title="Search page size",
        description="People per search page (at most 1000).",
    ),
    th.Property(
        "hydration_concurrency",
        th.IntegerType(nullable=False, minimum=1, maximum=64),
        default=8,
        title="Hydration concurrency",
        description="Attribute requests in flight at once; the requests_per_second budget still applies.",
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
        description="Seconds to wait for one App API answer before retrying.",
    ),
).to_dict()


def schema_errors(config: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """JSON Schema problems (filling in defaults as a side effect), never echoing a secret's value."""
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


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_url_error(api_url: str) -> str | None:
    """Why ``api_url`` cannot be used as the API origin, or None when it can."""
    try:
        parts = urlsplit(api_url.strip())
        host = (parts.hostname or "").lower()
    except ValueError:
        host = ""
    if not host or parts.scheme not in ("http", "https"):
        return "api_url must be an http(s) origin such as https://api.customer.io"
    if parts.username or parts.password:
        return "api_url must not contain credentials; put the key in app_api_key"
    if parts.query or parts.fragment:
        return "api_url must not contain a query string or fragment"
    if parts.scheme == "http" and not is_loopback_host(host):
        return f"api_url must use https:// for {host} (plain http:// is only allowed for loopback hosts)"
    return None


def config_errors(config: Mapping[str, Any], *, region_given: bool) -> list[str]:
    """Problems JSON Schema cannot see. ``region_given``: the user set region (rather than the default)."""
    errors: list[str] = []
    region = config.get("region") or "us"
    workspace_url, api_url = config.get("workspace_url"), config.get("api_url")
    if workspace_url and isinstance(workspace_url, str):
        implied, error = workspace_region(workspace_url)
        if error:
            errors.append(error)
        elif region_given and implied != region:
            host = urlsplit(workspace_url.strip()).hostname
            errors.append(
                f"region is '{region}' but workspace_url is on {host}, a workspace of region '{implied}': "
                f"set region to '{implied}' or fix workspace_url"
            )
    if api_url and isinstance(api_url, str) and (error := api_url_error(api_url)):
        errors.append(error)
    return errors


def effective_region(config: Mapping[str, Any], *, region_given: bool) -> str:
    """The region to use: the one set, else the one the workspace URL implies, else us."""
    if (
        not region_given
        and isinstance(workspace_url := config.get("workspace_url"), str)
        and workspace_url
    ):
        implied, _ = workspace_region(workspace_url)
        if implied:
            return implied
    return config.get("region") or "us"


def api_origin(config: Mapping[str, Any], region: str) -> str:
    """Where requests go: ``{origin}/v1/...``."""
    if api_url := config.get("api_url"):
        return re.sub(r"/+$", "", api_url.strip())
    return REGION_HOSTS[region]


def segment_ids(config: Mapping[str, Any]) -> list[int]:
    """Configured segment ids, de-duplicated, in the order given."""
    return list(dict.fromkeys(config.get("segment_ids") or []))
