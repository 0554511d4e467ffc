"""singer-sdk's standard tap tests, run against a live sandbox (not canned responses)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cio_sandbox import Sandbox, World
from singer_sdk.testing import SuiteConfig, get_tap_test_class
from tap_customerio_people.tap import TapCustomerIOPeople

WORLD = World(seed=41, people=300)

# The runner fixture is class-scoped and the test class is built at import, before any sandbox
# exists, so the config is a dict that the module fixture below points at the sandbox once it has
# started.
SAMPLE_CONFIG: dict = {
    "app_api_key": WORLD.keys.app_api_key,
    "api_url": "http://127.0.0.1:9",
    "requests_per_second": 500,
}

_BaseTests = get_tap_test_class(
    TapCustomerIOPeople,
    config=SAMPLE_CONFIG,
    suite_config=SuiteConfig(max_records_limit=400),
    parse_env_config=False,
)


@pytest.fixture(scope="module", autouse=True)
def standard_tests_sandbox() -> Iterator[Sandbox]:
    with Sandbox(WORLD) as sb:
        sb.obs.faults.app_rate_limit = 0
        SAMPLE_CONFIG["api_url"] = sb.app_api_url
        yield sb


class TestTapCustomerIOPeople(_BaseTests):  # type: ignore[misc, valid-type]  # built at runtime
    """The SDK's tap, stream and attribute suites."""


def test_the_standard_suites_read_the_live_sandbox(standard_tests_sandbox: Sandbox) -> None:
    """Runs after the class above: its syncs went over HTTP to the sandbox."""
    requests = standard_tests_sandbox.obs.requests
    assert requests[("app", "POST /v1/customers/attributes")] >= 3
    assert requests[("app", "GET /v1/esp/suppression/{suppression_type}")] >= 4
