"""The tricky logic on its own: rate budget, retry waits, Retry-After, config rules, cursor guard,
pipeline."""

from __future__ import annotations

import itertools
import logging
import random
import ssl
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from singer_sdk.exceptions import ConfigValidationError, RetriableAPIError
from tap_customerio_people import errors, settings, urls
from tap_customerio_people.pagination import SearchCursor
from tap_customerio_people.people import Identifier, person_record, search_filter
from tap_customerio_people.pipeline import run_ahead
from tap_customerio_people.ratelimit import RateLimiter
from tap_customerio_people.retry import (
    RetryPolicy,
    is_certificate_failure,
    parse_retry_after,
    rate_limited_wait,
)
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


# ------------------------------------------------------------------------------------- rate budget
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
    gaps = [b - a for a, b in itertools.pairwise(starts)]
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


# ----------------------------------------------------------------------------------------- retries
def test_parse_retry_after_seconds_and_dates() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("1") == 1.0
    assert parse_retry_after(" 2.5 ") == 2.5
    http_date = (now + timedelta(seconds=3)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(http_date, now=now.timestamp()) == pytest.approx(3.0)
    past = (now - timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert parse_retry_after(past, now=now.timestamp()) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None
    # Not capped where it is parsed (CONTRIBUTING.md): the caller bounds the wait.
    assert parse_retry_after("86400") == 86400.0
    long_429 = RetriableAPIError("429", response(429, {"Retry-After": "86400"}))
    assert rate_limited_wait(long_429) == 120.0  # bounded


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "-inf", "1 s", "Mon, 99 Foo 2026"])
def test_parse_retry_after_unreadable_is_none(value: str) -> None:
    assert parse_retry_after(value) is None


def test_certificate_failures_are_found_behind_wrappers() -> None:
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    wrapped = requests.exceptions.SSLError(OSError("handshake", verify))
    assert is_certificate_failure(wrapped)
    try:
        try:
            raise verify
        except ssl.SSLError as inner:
            raise requests.exceptions.ConnectionError("boom") from inner
    except requests.exceptions.ConnectionError as outer:
        assert is_certificate_failure(outer)
    assert not is_certificate_failure(requests.exceptions.SSLError("EOF in handshake"))


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


# ------------------------------------------------------------------------------------------ errors
def test_error_messages_carry_no_body() -> None:
    body = b'{"errors":[{"detail":"jane.doe@example.com is invalid","status":"400"}]}'
    message = errors.http_error_message(response(400, body=body))
    assert "@" not in message and "jane" not in message
    assert (
        message == "Customer.io App API answered 400 Bad Request for POST /v1/customers/attributes"
    )
    assert "\n" not in errors.authentication_message("us", "https://api.customer.io")
    assert "segment 42 does not exist" in errors.segment_not_found_message(42)


# ------------------------------------------------------------------------------------------ config
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


@pytest.mark.parametrize("bad_key", [f" {KEY}", f"{KEY}\n", f"{KEY}\r\nX-Injected: 1", "sk\tapp"])
def test_a_key_with_a_space_or_control_character_is_one_line_without_the_key(
    bad_key: str,
) -> None:
    with pytest.raises(ConfigValidationError) as caught:
        TapCustomerIOPeople(config={"app_api_key": bad_key})
    [problem] = caught.value.errors
    assert problem.startswith("app_api_key contains a space, line break")
    assert "\n" not in problem and KEY not in problem and "sk\t" not in problem
    assert settings.secret_error(KEY, "app_api_key") is None


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://127.0.0.1:9/proxy", "must not contain a path"),
        ("https://api.example.com/v1/", "must not contain a path"),
        ("https://api.example.com#top", "fragment"),
        ("http://127.0.0.1:notaport", "cannot be parsed"),
        (42, "must be an http(s) origin"),
    ],
)
def test_origin_rules(url: object, fragment: str) -> None:
    error = urls.origin_error(url, "api_url")
    assert error is not None and fragment in error and error.startswith("api_url ")
    assert urls.origin_error("https://api-eu.customer.io/", "api_url") is None
    assert urls.normalized_origin(" http://localhost:8080// ") == "http://localhost:8080"
    assert urls.is_loopback_host("LOCALHOST") and urls.is_loopback_host("127.8.0.1")
    assert not urls.is_loopback_host("10.0.0.1")


def test_user_errors_share_one_base_and_one_exit(caplog: pytest.LogCaptureFixture) -> None:
    for kind in (
        errors.ConfigError,
        errors.CertificateError,
        errors.AuthenticationError,
        errors.SegmentNotFoundError,
        errors.RetriesExhaustedError,
        errors.StuckCursorError,
    ):
        assert issubclass(kind, errors.UserError)
    assert errors.UserError.exit_code == 1
    assert errors.one_line("two\n  lines\t") == "two lines"
    assert len(errors.one_line("x " * 1000)) == errors.MAX_MESSAGE
    logger = logging.getLogger("test-exit-with")
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as caught:
        errors.exit_with(errors.ConfigError("fix\nthis"), logger)
    assert caught.value.code == 1
    assert caplog.messages == ["fix this"]


def test_streams_sync_suppressions_first() -> None:
    tap = TapCustomerIOPeople(config={"app_api_key": KEY})
    assert list(tap.streams) == ["suppressions", "segments", "people"]
    assert [s["tap_stream_id"] for s in tap.catalog_dict["streams"]] == list(tap.streams)


# ------------------------------------------------------------------------------------------ search
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
    unverified = {"not": {"attribute": {"field": "EV_Status", "operator": "exists"}}}
    assert search_filter([], unverified) == {"filter": unverified}
    assert search_filter([3, 9], unverified) == {
        "filter": {"and": [unverified, {"or": [{"segment": {"id": 3}}, {"segment": {"id": 9}}]}]}
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


# ---------------------------------------------------------------------------------------- pipeline
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


def test_repeats_anywhere_in_the_listing_are_dropped_and_counted() -> None:
    """A Person repeated by the same pass, on the next page or five pages on, is listed once; the
    second pass re-lists everyone, which is no repeat."""
    from tap_customerio_people.listing import PeopleListing

    def page(p: int) -> dict:
        ids = [f"{p}-{i}" for i in range(3)]
        if p:
            ids.append(f"{p - 1}-2")  # the last of the page before
        if p == 7:
            ids.append("1-0")  # six pages back
        return {
            "identifiers": [{"cio_id": c, "id": None, "email": None} for c in ids],
            "next": f"c{p + 1}" if p < 9 else "",
        }

    class FakeStream:
        def __init__(self) -> None:
            self.calls = 0

        def send(self, *_args: object, **_kwargs: object):
            answer = page(self.calls % 10)
            self.calls += 1
            return type("Response", (), {"json": lambda _self: answer})()

    fake = FakeStream()  # a Sender whose answers have .json() only
    listing = PeopleListing(fake, {}, page_size=5)  # type: ignore[arg-type]  # not a real Response
    with listing.run() as snapshot:
        ids = [hit.cio_id for chunk in snapshot.chunks() for hit in chunk]
    assert ids == [f"{p}-{i}" for p in range(10) for i in range(3)]
    assert (fake.calls, listing.pages) == (20, 20)  # two passes of ten pages
    assert listing.duplicates == 2 * 10  # each pass: 9 neighbours and one six pages back
    assert listing.second_pass_only == 0
