"""Size packing, retry policy (with Retry-After) and config checks: pure logic, no network."""

from __future__ import annotations

import email.utils
import itertools
import random

import pytest
from target_customerio_ev.batching import BATCH_OVERHEAD, batch_body, pack
from target_customerio_ev.retry import RetryPolicy, is_retryable_status, parse_retry_after
from target_customerio_ev.settings import Settings, config_errors

KEY = "sekret-wr1te-k3y"


def items(sizes):
    return [(i, b"x" * n) for i, n in enumerate(sizes)]


def test_pack_respects_bytes_count_and_order():
    sizes = [random.Random(3).randrange(100, 30_000) for _ in range(400)]
    chunks = list(pack(items(sizes), max_bytes=100_000, max_messages=50))
    assert [i for chunk in chunks for i, _ in chunk] == list(range(400))
    for chunk in chunks:
        assert len(batch_body([data for _, data in chunk])) <= 100_000
        assert len(chunk) <= 50
    # Greedy: no chunk could have taken the next item.
    for chunk, following in itertools.pairwise(chunks):
        body = len(batch_body([data for _, data in chunk]))
        assert body + 1 + len(following[0][1]) > 100_000 or len(chunk) == 50


def test_pack_exact_boundary_and_oversize():
    fit = 1000 - BATCH_OVERHEAD - 1
    chunks = list(pack(items([fit // 2, fit - fit // 2, 1]), max_bytes=1000, max_messages=10))
    assert [len(c) for c in chunks] == [2, 1]
    with pytest.raises(ValueError, match="larger than max_bytes"):
        list(pack(items([2000]), max_bytes=1000, max_messages=10))


def test_retry_statuses():
    assert all(is_retryable_status(s) for s in (408, 429, 500, 502, 503, 504, 599))
    assert not any(is_retryable_status(s) for s in (200, 400, 401, 403, 404, 413))


def test_backoff_is_exponential_bounded_and_jittered():
    policy = RetryPolicy(max_retries=5, base_seconds=0.5, max_seconds=8, rng=random.Random(1))
    for attempt in range(12):
        delay = policy.delay(attempt)
        low = min(0.5 * 2**attempt, 8)
        assert low <= delay <= min(2 * low, 8)
    assert policy.allows(4) and not policy.allows(5)
    assert len({round(RetryPolicy(rng=random.Random(s)).delay(2), 6) for s in range(10)}) > 1


def test_retry_after_wins_and_is_capped():
    policy = RetryPolicy(max_seconds=10, rng=random.Random(1))
    assert 3 <= policy.delay(0, retry_after=3) <= 3.25
    assert 10 <= policy.delay(0, retry_after=3600) <= 10.25
    assert parse_retry_after("2") == 2
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert parse_retry_after(date, now=1_000_000) == pytest.approx(30)
    assert parse_retry_after(date, now=2_000_000) == 0


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({}, "pipelines_api_key is required"),
        ({"pipelines_api_key": KEY, "update_only": True}, "update_only needs api: track"),
        ({"pipelines_api_key": KEY, "api_url": "http://cdp.example.com"}, "plain http://"),
        ({"pipelines_api_key": KEY, "api_url": "https://cdp.example.com/v1"}, "without a path"),
        ({"pipelines_api_key": KEY, "api_url": "cdp.customer.io"}, "must be an origin"),
        ({"api": "track", "track_site_id": "s"}, "needs track_api_key"),
        ({"pipelines_api_key": KEY, "max_batch_bytes": 600_000}, "max_batch_bytes must be between"),
        ({"pipelines_api_key": KEY, "traits": []}, "traits is empty"),
        ({"pipelines_api_key": KEY, "load_method": "overwrite"}, "is not supported"),
        (
            {"pipelines_api_key": KEY, "app_api_url": "http://api.example.com"},
            "app_api_url uses plain http://",
        ),
        (
            {"pipelines_api_key": KEY, "app_api_url": "https://api.customer.io/v1"},
            "app_api_url must be an origin such as https://api.customer.io",
        ),
        ({"pipelines_api_key": KEY, "landing_check_sample": -1}, "landing_check_sample must be"),
        ({"pipelines_api_key": KEY, "landing_check_timeout": 0}, "landing_check_timeout must be"),
    ],
)
def test_config_errors_are_single_lines(config, fragment):
    errors = config_errors(config)
    assert len(errors) == 1 and fragment in errors[0] and "\n" not in errors[0]
    assert KEY not in errors[0]


def test_good_configs_and_defaults():
    assert config_errors({"pipelines_api_key": KEY, "api_url": "http://127.0.0.1:8080"}) == []
    assert config_errors({"pipelines_api_key": KEY, "api_url": "http://localhost:1/"}) == []
    assert (
        config_errors(
            {"api": "track", "track_site_id": "s", "track_api_key": "t", "update_only": True}
        )
        == []
    )
    s = Settings.from_config({"pipelines_api_key": KEY, "region": "eu"})
    assert (
        s.base_url == "https://cdp-eu.customer.io" and s.identify_by == "auto" and s.skip_unchanged
    )
    assert (
        s.traits == ("EV_Status", "EV_SubStatus", "EV_Validation_Timestamp")
        and s.timestamp_format == "unix"
    )
    t = Settings.from_config(
        {"api": "track", "region": "eu", "track_api_url": "http://127.0.0.1:9/"}
    )
    assert t.base_url == "http://127.0.0.1:9"
    assert Settings.from_config({"api": "track"}).base_url == "https://track.customer.io"
    # The App API (landing check) follows the region unless app_api_url says otherwise.
    assert s.app_base_url == "https://api-eu.customer.io" and not s.landing_check
    assert Settings.from_config({"app_api_url": "http://127.0.0.1:7/"}).app_base_url == (
        "http://127.0.0.1:7"
    )
    checked = Settings.from_config({"pipelines_api_key": KEY, "app_api_key": "a"})
    assert checked.app_base_url == "https://api.customer.io" and checked.landing_check
    assert checked.landing_check_sample == 50 and checked.landing_check_timeout == 300
    assert not Settings.from_config({"app_api_key": "a", "landing_check_sample": 0}).landing_check
    assert not Settings.from_config({"app_api_key": "a", "dry_run": True}).landing_check
