"""Bad configuration of each plugin: one clear line naming the setting, exit non-zero, no traceback,
no key echoed, and not one request, DNS query or SMTP connection made first."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cio_sandbox import Sandbox, World
from cio_sandbox.pipeline import MAPPER, TAP, TARGET, executable, write_config

DROP = object()  # marks a setting to remove from the sandbox's ready config

# plugin, case -> (overrides, words the one error line must contain)
CASES: dict[tuple[str, str], tuple[dict[str, Any], str]] = {
    (TAP, "missing_key"): ({"app_api_key": DROP}, "app_api_key"),
    (TAP, "wrong_type"): ({"requests_per_second": "fast"}, "requests_per_second"),
    (TAP, "public_http"): ({"api_url": "http://api.customerio.invalid"}, "https://"),
    (TAP, "region_contradiction"): (
        {"region": "eu", "workspace_url": "https://fly.customer.io/workspaces/1"},
        "workspace_url",
    ),
    (MAPPER, "missing_key"): (
        {"backend": "emailverify", "emailverify_api_key": DROP},
        "emailverify_api_key",
    ),
    (MAPPER, "wrong_type"): ({"smtp_port": "twenty-five"}, "smtp_port"),
    (MAPPER, "public_http"): (
        {"backend": "emailverify", "emailverify_api_url": "http://api.emailverify.invalid"},
        "https://",
    ),
    (MAPPER, "bad_proxy"): ({"socks_proxy": "http://10.0.0.1:1080"}, "socks_proxy"),
    (TARGET, "missing_key"): ({"pipelines_api_key": DROP}, "pipelines_api_key"),
    (TARGET, "wrong_type"): ({"max_in_flight": "many"}, "max_in_flight"),
    (TARGET, "public_http"): ({"api_url": "http://cdp.customerio.invalid"}, "https://"),
    (TARGET, "contradiction"): ({"update_only": True}, "update_only"),
    # A key pasted with a line break or a space would break (or inject into) the HTTP headers.
    (TAP, "malformed_key"): ({"app_api_key": "PASTEDKEY\nX-Injected: 1"}, "app_api_key"),
    (MAPPER, "malformed_key"): (
        {"backend": "emailverify", "emailverify_api_key": "PASTEDKEY with spaces"},
        "emailverify_api_key",
    ),
    (TARGET, "malformed_key"): ({"pipelines_api_key": "PASTEDKEY\r\n"}, "pipelines_api_key"),
}
KNOWN_BUGS: dict[tuple[str, str], str] = {}

INPUT = (
    "\n".join(
        json.dumps(m)
        for m in [
            {
                "type": "SCHEMA",
                "stream": "people",
                "key_properties": ["cio_id"],
                "schema": {
                    "type": "object",
                    "properties": {
                        "cio_id": {"type": "string"},
                        "id": {"type": "string"},
                        "email": {"type": "string"},
                    },
                },
            },
            {
                "type": "RECORD",
                "stream": "people",
                "record": {"cio_id": "1", "id": "u1", "email": "someone@example.com"},
            },
            {"type": "STATE", "value": {}},
        ]
    )
    + "\n"
)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Any]:
    """Every bad config run once (a few at a time) against one quiet sandbox."""
    with Sandbox(World(seed=61, people=20)) as sb:
        ready: dict[str, Callable[..., dict[str, Any]]] = {
            TAP: sb.tap_config,
            MAPPER: sb.mapper_config,
            TARGET: sb.target_config,
        }

        def attempt(item: tuple[tuple[str, str], tuple[dict[str, Any], str]]) -> tuple[Any, ...]:
            (plugin, case), (overrides, _) = item
            config = {**ready[plugin](), **overrides}
            config = {k: v for k, v in config.items() if v is not DROP}
            workdir = tmp_path_factory.mktemp(f"{plugin}-{case}")
            # A plugin that wrongly accepted a public http:// URL gets no record to send there.
            stdin = "" if plugin == TAP or case == "public_http" else INPUT
            done = subprocess.run(
                [executable(plugin), "--config", str(write_config(workdir, plugin, config))],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=60,
            )
            return (plugin, case), done

        with ThreadPoolExecutor(max_workers=3) as pool:
            results = dict(pool.map(attempt, CASES.items()))
        counters = sb.obs.snapshot()
        secrets = [sb.keys.app_api_key, sb.keys.pipelines_api_key, sb.keys.emailverify_api_key]
    return {"results": results, "counters": counters, "secrets": secrets}


def test_no_request_before_the_config_is_checked(outcomes) -> None:
    counters = outcomes["counters"]
    assert counters["requests"] == {}
    assert counters["dns_queries"] == 0 and counters["smtp_connections"] == 0


@pytest.mark.parametrize(
    "plugin,case",
    [
        pytest.param(
            *key,
            marks=[pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[key])]
            if key in KNOWN_BUGS
            else [],
        )
        for key in CASES
    ],
)
def test_one_clear_line(plugin: str, case: str, outcomes) -> None:
    done = outcomes["results"][(plugin, case)]
    expected = CASES[(plugin, case)][1]
    assert done.returncode != 0, done.stderr[-1500:]
    assert "Traceback" not in done.stderr, done.stderr[-1500:]
    errors = [
        line for line in done.stderr.splitlines() if "| ERROR" in line or "| CRITICAL" in line
    ]
    # The SDK closes with a summary line of its own; the problem itself is one line that names
    # the setting.
    problems = [line for line in errors if not line.endswith("Config validation failed")]
    assert len(problems) == 1 and expected in problems[0], errors
    assert not any(secret in done.stderr for secret in [*outcomes["secrets"], "PASTEDKEY"])
    assert done.stdout == "", "nothing may be emitted on a bad config"
