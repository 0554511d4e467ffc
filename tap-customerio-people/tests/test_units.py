"""The tricky logic on its own: rate budget, retry waits, Retry-After, config rules, cursor guard, pipeline."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from singer_sdk.exceptions import ConfigValidationError, RetriableAPIError
from tap_customerio_people import errors, settings
from tap_customerio_people.pagination import SearchCursor
from tap_customerio_people.people import Identifier, person_record, search_filter
from tap_customerio_people.pipeline import run_ahead
from tap_customerio_people.ratelimit import RateLimiter
from tap_customerio_people.retries import RetryPolicy, parse_retry_after, rate_limited_wait
from tap_customerio_people.tap import TapCustomerIOPeople

KEY = "sk_app_0123456789abcdef"


def response(
    status: int, headers: dict[str, str] | None = None, body: bytes = b""
) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp.headers.update(headers or {})
    resp._content = body
    resp.url = "https://api.customer.io/v1/customers/attributes?id_type=cio_id"
    resp.request = requests.Request("POST", resp.url).prepare()
    return resp


# ---------------------------------------------------------------------------------------------- rate budget
def test_rate_limiter_spaces_starts_across_threads() -> None:
    limiter = RateLimiter(100)
    starts: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(6):
            ticket = limiter.acquire()
            with lock:
                starts.append(ticket.start)
            limiter.release(ticket, "GET /x")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    starts.sort()
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert len(starts) == 48
    assert min(gaps) >= limiter.interval - 1e-6
    # never more than window_count starts inside one window
    n = limiter.window_count
    assert all(starts[i + n] - starts[i] >= limiter.window for i in range(len(starts) - n))


def test_rate_limiter_window_waits_for_a_slow_request_to_be_counted() -> None:
    limiter = RateLimiter(4)  # 4 requests per 1 s window
    fast = limiter.acquire()
    limiter.release(fast, "GET /x")  # the fastest answer seen for this endpoint: ~0 s
    slow = limiter.acquire()
    time.sleep(
        0.3
    )  # answered 0.3 s later than the fastest: the server may have counted it that late
    limiter.release(slow, "GET /x")
    third, fourth = limiter.acquire(), limiter.acquire()
    fifth, sixth = limiter.acquire(), limiter.acquire()
    assert fifth.start - fast.start >= limiter.window * (1 + limiter.margin) - 1e-6
    assert sixth.start - slow.start >= limiter.window * (1 + limiter.margin) + 0.29
    for ticket in (third, fourth, fifth, sixth):
        limiter.release(ticket, "GET /x")


def test_only_successful_answers_set_the_pace() -> None:
    limiter = RateLimiter(1000)
    reset = limiter.acquire()
    limiter.release(reset, "POST /x", ok=False)  # a dropped connection: instant, not a real answer
    normal = limiter.acquire()
    time.sleep(0.05)
    limiter.release(normal, "POST /x")
    assert normal.delay == 0.0  # not "late" compared with the reset
    late = limiter.acquire()
    time.sleep(0.1)
    limiter.release(late, "POST /x")
    assert 0.04 <= late.delay <= 0.2


def test_rate_limiter_pause_holds_everyone() -> None:
    limiter = RateLimiter(1000)
    limiter.pause(0.3)
    started = time.monotonic()
    ticket = limiter.acquire()
    assert ticket.start - started >= 0.29


def test_rate_limiter_rejects_non_positive_rate() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        RateLimiter(0)


def test_fractional_rates_keep_their_meaning() -> None:
    assert (RateLimiter(0.5).window_count, RateLimiter(0.5).window) == (1, 2.0)
    assert RateLimiter(7.5).window_count == 7
    assert RateLimiter(7.5).window == pytest.approx(7 / 7.5)


# ---------------------------------------------------------------------------------------------- retries
def test_parse_retry_after_seconds_and_dates() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("1") == 1.0
    assert parse_retry_after(" 2.5 ") == 2.5
    http_date = (now + timedelta(seconds=3)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(http_date, now=now) == pytest.approx(3.0)
    past = (now - timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(past, now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("86400") == 120.0  # bounded


def test_429_waits_at_least_retry_after() -> None:
    policy = RetryPolicy()
    exc = RetriableAPIError("429", response(429, {"Retry-After": "2"}))
    waits = [policy.wait(exc, attempt) for attempt in (1, 2, 5)]
    assert all(2.0 <= w <= 2.31 for w in waits)
    no_header = RetriableAPIError("429", response(429))
    assert rate_limited_wait(no_header) == 1.0


def test_transient_failures_back_off_exponentially_bounded() -> None:
    policy = RetryPolicy(base=0.5, cap=8.0, rng=lambda low, high: high)
    exc = RetriableAPIError("503", response(503))
    assert [policy.wait(exc, n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    jittered = RetryPolicy(base=0.5, cap=8.0, rng=random.Random(1).uniform)
    assert 2.0 <= jittered.wait(requests.exceptions.ConnectionError(), 4) <= 4.0
    assert rate_limited_wait(exc) is None


def test_wait_generator_speaks_backoffs_protocol() -> None:
    gen = RetryPolicy(rng=lambda low, high: high).waits()
    gen.send(None)  # backoff primes the generator
    assert gen.send(requests.exceptions.Timeout()) == 0.5
    assert gen.send(requests.exceptions.Timeout()) == 1.0


# ---------------------------------------------------------------------------------------------- errors
def test_error_messages_carry_no_body() -> None:
    body = b'{"errors":[{"detail":"jane.doe@example.com is invalid","status":"400"}]}'
    message = errors.http_error_message(response(400, body=body))
    assert "@" not in message and "jane" not in message
    assert (
        message == "Customer.io App API answered 400 Bad Request for POST /v1/customers/attributes"
    )
    assert "\n" not in errors.authentication_message("us", "https://api.customer.io")
    assert "segment 42 does not exist" in errors.segment_not_found_message(42)


# ---------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        (
            {"region": "us", "workspace_url": "https://eu.fly.customer.io/workspaces/1"},
            "set region to 'eu'",
        ),
        (
            {"region": "eu", "workspace_url": "https://fly.customer.io/workspaces/1"},
            "set region to 'us'",
        ),
        (
            {"workspace_url": "https://example.com/workspaces/1"},
            "workspace_url must be a Customer.io",
        ),
        ({"api_url": "http://api.example.com"}, "must use https://"),
        ({"api_url": "ftp://127.0.0.1"}, "http(s) origin"),
        ({"api_url": "https://user:pw@api.example.com"}, "must not contain credentials"),
        ({"api_url": "https://api.example.com/?x=1"}, "query string"),
    ],
)
def test_cross_setting_rules(config: dict, fragment: str) -> None:
    problems = settings.config_errors(config, region_given="region" in config)
    assert len(problems) == 1
    assert fragment in problems[0]


def test_loopback_http_and_region_inference() -> None:
    assert settings.config_errors({"api_url": "http://127.0.0.1:8080"}, region_given=False) == []
    assert settings.config_errors({"api_url": "http://localhost:1/"}, region_given=False) == []
    assert settings.config_errors({"api_url": "http://[::1]:1"}, region_given=False) == []
    eu_workspace = {"workspace_url": "https://eu.fly.customer.io/workspaces/224149/journeys"}
    assert settings.effective_region(eu_workspace, region_given=False) == "eu"
    assert settings.api_origin({}, "eu") == "https://api-eu.customer.io"
    assert settings.api_origin({}, "us") == "https://api.customer.io"
    assert (
        settings.api_origin({"api_url": "http://127.0.0.1:9/proxy/"}, "us")
        == "http://127.0.0.1:9/proxy"
    )


def test_tap_rejects_bad_config_in_one_line_per_problem_without_the_key() -> None:
    bad = {
        "app_api_key": KEY,
        "region": "us",
        "workspace_url": "https://eu.fly.customer.io/workspaces/1",
        "segment_ids": ["all"],
        "requests_per_second": 0,
    }
    with pytest.raises(ConfigValidationError) as caught:
        TapCustomerIOPeople(config=bad)
    problems = caught.value.errors
    assert len(problems) == 3, problems
    assert all("\n" not in p for p in problems)
    assert KEY not in str(caught.value)
    with pytest.raises(ConfigValidationError) as caught:
        TapCustomerIOPeople(config={"app_api_key": 12345678})
    assert "12345678" not in str(caught.value)
    assert caught.value.errors == ["app_api_key must be a non-empty string"]


def test_eu_workspace_without_region_picks_the_eu_host() -> None:
    tap = TapCustomerIOPeople(
        config={"app_api_key": KEY, "workspace_url": "https://eu.fly.customer.io/workspaces/7"}
    )
    assert (tap.region, tap.api_origin) == ("eu", "https://api-eu.customer.io")
    tap = TapCustomerIOPeople(config={"app_api_key": KEY, "region": "eu"})
    assert tap.api_origin == "https://api-eu.customer.io"


# ---------------------------------------------------------------------------------------------- search
def test_cursor_ends_on_empty_cursor_or_empty_page() -> None:
    for terminal in ("", None):
        cursor = SearchCursor()
        cursor.advance("abc", ["1", "2"])
        assert (cursor.start, cursor.finished) == ("abc", False)
        cursor.advance(terminal, ["3"])
        assert cursor.finished
    cursor = SearchCursor()
    cursor.advance("abc", [])
    assert cursor.finished


def test_cursor_that_does_not_advance_is_an_error() -> None:
    cursor = SearchCursor()
    cursor.advance("abc", ["1", "2"])
    with pytest.raises(errors.StuckCursorError, match="same page twice"):
        cursor.advance("def", ["1", "2"])
    cursor = SearchCursor()
    cursor.advance("abc", ["1"])
    with pytest.raises(errors.StuckCursorError, match="cursor it had already given"):
        cursor.advance("abc", ["2"])
    cursor = SearchCursor()
    cursor.advance("a", ["1"])
    cursor.advance("b", ["2"])
    with pytest.raises(errors.StuckCursorError):
        cursor.advance("a", ["3"])  # a loop longer than one page


def test_search_filters() -> None:
    assert search_filter([]) == {
        "filter": {"and": [{"attribute": {"field": "cio_id", "operator": "exists"}}]}
    }
    assert search_filter([3, 9]) == {
        "filter": {"or": [{"segment": {"id": 3}}, {"segment": {"id": 9}}]}
    }


def test_email_only_person_keeps_its_null_id() -> None:
    hit = Identifier.from_api({"cio_id": 3000005, "id": "", "email": "x@example.com"})
    assert hit == Identifier(cio_id="3000005", id=None, email="x@example.com")
    record = person_record(
        hit, {"attributes": {"email": "x@example.com", "EV_Status": "Valid"}, "unsubscribed": True}
    )
    assert record == {
        "cio_id": "3000005",
        "id": None,
        "email": "x@example.com",
        "attributes": {"email": "x@example.com", "EV_Status": "Valid"},
        "unsubscribed": True,
    }


# ---------------------------------------------------------------------------------------------- pipeline
def test_run_ahead_keeps_order_and_overlaps_work() -> None:
    def work(n: int) -> int:
        time.sleep(random.Random(n).uniform(0.0, 0.05))
        return n * n

    started = time.monotonic()
    out = list(
        run_ahead(iter(range(40)), work, workers=8, max_pending=16, cancelled=threading.Event())
    )
    assert out == [n * n for n in range(40)]
    assert time.monotonic() - started < 40 * 0.025  # sequential would take ~1 s


def test_run_ahead_raises_the_first_failure_and_stops_the_producer() -> None:
    produced: list[int] = []

    def produce():
        for n in range(1000):
            produced.append(n)
            yield n

    def work(n: int) -> int:
        if n == 5:
            raise RuntimeError("boom")
        return n

    cancelled = threading.Event()
    with pytest.raises(RuntimeError, match="boom"):
        list(run_ahead(produce(), work, workers=2, max_pending=4, cancelled=cancelled))
    assert cancelled.is_set()
    time.sleep(0.3)
    assert len(produced) < 20


def test_run_ahead_stops_when_the_consumer_does() -> None:
    cancelled = threading.Event()
    results = run_ahead(
        iter(range(10**6)), lambda n: n, workers=2, max_pending=4, cancelled=cancelled
    )
    assert next(results) == 0
    results.close()
    assert cancelled.is_set()


def test_repeats_across_neighbouring_pages_are_dropped_and_memory_stays_bounded() -> None:
    from tap_customerio_people.people import RECENT_PAGES, PeopleSearch

    pages = [
        {
            "identifiers": [{"cio_id": f"{p}-{i}", "id": None, "email": None} for i in range(3)]
            + ([{"cio_id": f"{p - 1}-2", "id": None, "email": None}] if p else []),
            "next": f"c{p + 1}" if p < 9 else "",
        }
        for p in range(10)
    ]

    class FakeStream:
        def __init__(self) -> None:
            self.calls = 0

        def send(self, *_args: object, **_kwargs: object):
            page = pages[self.calls]
            self.calls += 1
            return type("Response", (), {"json": lambda _self: page})()

    search = PeopleSearch(FakeStream(), {}, page_size=4)  # type: ignore[arg-type]
    ids = [hit.cio_id for chunk in search.chunks() for hit in chunk]
    assert ids == [f"{p}-{i}" for p in range(10) for i in range(3)]
    assert search.duplicates == 9
    assert len(search.recent_pages) == RECENT_PAGES
